"""The hand-written numpy forward and backward (``grok_engine.numpy_pass``, ``one_layer``,
``one_layer_backward``) against autograd on the fast forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grok_engine import one_layer
from grok_engine.config import RunConfig, TaskConfig, ModelConfig
from grok_engine.fast import last_logits, loss_fn
from grok_engine.numpy_pass import MemberRows, NumpyPass
from grok_engine.tasks import make_dataset
from grok_engine.weights import init_weights, is_bias


def _setup(task: str, p: int, n_heads: int, seed: int = 3, frac_train: float = 0.6):
    cfg = RunConfig(task=TaskConfig(task=task, p=p, frac_train=frac_train),
                    model=ModelConfig(n_heads=n_heads, d_model=24, d_head=8, d_mlp=40, seed=seed))
    weights = {k: v for k, v in init_weights(cfg.task, cfg.model).items() if not is_bias(k)}
    return cfg, weights, make_dataset(cfg.task)


def _rows(ds, p: int, d_vocab_out: int) -> MemberRows:
    def split(idx):
        tokens, labels = ds.tokens[idx].numpy(), ds.labels[idx].numpy()
        return tokens[:, 0] * p + tokens[:, 1], labels

    train, test = split(ds.train_indices), split(ds.test_indices)
    return MemberRows(*train, one_layer.onehot(train[1], d_vocab_out), *test)


def _numpy_pass(members: list[tuple[dict, MemberRows]], cfg: RunConfig):
    """(test loss, test acc, train loss, train acc) [M] and gradients [M, ...] of a pass over
    ``members`` (weights, rows); every gradient entry starts NaN, so each must be written."""
    w = {k: np.stack([m[0][k].numpy() for m in members]) for k in members[0][0]}
    grads = {k: np.full_like(v, np.nan) for k, v in w.items()}
    numpy_pass = NumpyPass([m[1] for m in members], cfg.task.p, cfg.model, cfg.task.d_vocab_out)
    test = numpy_pass.evaluate(w, grads, True)
    train = numpy_pass.gradient(w, grads)
    return (*test, *train), grads


@pytest.mark.parametrize("task,p,n_heads", [("add", 10, 4), ("mod_add", 13, 1), ("mod_mul", 7, 3)])
def test_loss_and_gradients_equal_autograd(task, p, n_heads):
    cfg, weights, ds = _setup(task, p, n_heads)
    rows = _rows(ds, p, cfg.task.d_vocab_out)
    leaves = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    tokens = ds.tokens[ds.train_indices]
    ref_logits = last_logits(leaves, tokens[:, 0], tokens[:, 1], cfg.model)
    loss = loss_fn(ref_logits, ds.labels[ds.train_indices])
    loss.backward()
    with torch.no_grad():
        test_tokens = ds.tokens[ds.test_indices]
        ref_test = loss_fn(last_logits(weights, test_tokens[:, 0], test_tokens[:, 1], cfg.model),
                           ds.labels[ds.test_indices]).item()

    (test_loss, _, train_loss, _), grads = _numpy_pass([(weights, rows)], cfg)

    assert train_loss[0] == pytest.approx(loss.item(), rel=1e-6)  # float32 sums in another order
    assert test_loss[0] == pytest.approx(ref_test, rel=1e-6)
    for name, leaf in leaves.items():
        scale = leaf.grad.abs().max().item()
        np.testing.assert_allclose(grads[name][0], leaf.grad.numpy(), rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=name)


def test_grid_logits_equal_autograd_and_the_metrics_the_notebooks():
    cfg, weights, ds = _setup("add", 10, 4)
    w = one_layer.one_member({k: v.numpy() for k, v in weights.items()})
    logits = one_layer.grid_forward(w, 10, cfg.model).logits[0]
    a, b = np.divmod(np.arange(100), 10)
    ref = last_logits(weights, torch.from_numpy(a), torch.from_numpy(b), cfg.model)
    np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-5, atol=1e-6)
    labels = torch.from_numpy(a + b)
    onehot = one_layer.onehot(labels.numpy(), cfg.task.d_vocab_out)
    loss = -float(np.vdot(one_layer.log_probs(logits), onehot)) / len(logits)
    acc = one_layer.accuracy(logits, labels.numpy())
    assert loss == pytest.approx(loss_fn(torch.from_numpy(logits), labels).item(), rel=1e-12)
    assert acc == pytest.approx((torch.from_numpy(logits).argmax(1) == labels).double().mean().item())


def test_members_of_other_splits_share_one_pass_and_keep_their_own_numbers():
    """Two members with train splits of different sizes and other weights in one pass get
    the numbers each gets alone, to the bit: the grid backward needs no groups."""
    cfg, w1, ds1 = _setup("mod_add", 11, 2, seed=1, frac_train=0.3)
    cfg2, w2, ds2 = _setup("mod_add", 11, 2, seed=2, frac_train=0.7)
    r1, r2 = _rows(ds1, 11, cfg.task.d_vocab_out), _rows(ds2, 11, cfg.task.d_vocab_out)
    assert len(r1.train) != len(r2.train)
    both, grads = _numpy_pass([(w1, r1), (w2, r2)], cfg)
    for i, (w, r) in enumerate([(w1, r1), (w2, r2)]):
        alone, grads_alone = _numpy_pass([(w, r)], cfg)
        assert [x[i] for x in both] == [x[0] for x in alone]
        for name in grads:
            np.testing.assert_array_equal(grads[name][i], grads_alone[name][0], err_msg=name)


def test_supported_only_for_the_notebooks_shape():
    names = set(one_layer.WEIGHTS)
    assert one_layer.supported(ModelConfig(), names)
    assert not one_layer.supported(ModelConfig(n_layers=2), names)
    assert not one_layer.supported(ModelConfig(normalization="LN"), names)
    assert not one_layer.supported(ModelConfig(act_fn="gelu"), names)
    assert not one_layer.supported(ModelConfig(), names | {"blocks.0.mlp.b_in"})


def subnormal_count(x: np.ndarray) -> int:
    a = np.abs(x)
    return int(((a > 0) & (a < np.finfo(np.float32).tiny)).sum())


def test_no_subnormal_reaches_the_backward_on_either_path():
    """Logits of a model that fits its rows by margins of 90-100 nats: the wrong classes'
    probabilities are ~1e-40, float32 subnormals, which cost ~100 cycles per product on Intel
    CPUs in every matmul of the backward. Both paths set them to 0, the same way."""
    rng = np.random.default_rng(0)
    n, vocab = 64, 20
    labels = rng.integers(0, vocab, n)
    logits = rng.normal(size=(n, vocab)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(88.0, 100.0, n).astype(np.float32)
    onehot = one_layer.onehot(labels, vocab)
    # what the gradient would be without the flush: subnormal entries
    raw = (np.exp(one_layer.log_probs(logits)) - onehot) / n
    assert subnormal_count(raw.astype(np.float32)) > 100

    dlogits = one_layer.dlogits_of(one_layer.log_probs(logits), onehot)
    assert subnormal_count(dlogits) == 0
    from grok_engine.fast import flush_subnormals

    leaf = torch.from_numpy(logits).requires_grad_(True)
    logits_t = leaf * 1.0  # a non-leaf, as last_logits' output in Trainer._gradient
    logits_t.register_hook(flush_subnormals)
    loss_fn(logits_t, torch.from_numpy(labels)).backward()
    assert subnormal_count(leaf.grad.numpy()) == 0
    np.testing.assert_array_equal(leaf.grad.numpy(), dlogits)
