"""The hand-written numpy forward and backward of ``grok_engine.one_layer`` against autograd
on the fast forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grok_engine import one_layer
from grok_engine.config import RunConfig, TaskConfig, ModelConfig
from grok_engine.fast import last_logits, loss_fn
from grok_engine.tasks import make_dataset
from grok_engine.weights import init_weights, is_bias


def _setup(task: str, p: int, n_heads: int, seed: int = 3):
    cfg = RunConfig(task=TaskConfig(task=task, p=p, frac_train=0.6),
                    model=ModelConfig(n_heads=n_heads, d_model=24, d_head=8, d_mlp=40, seed=seed))
    weights = {k: v for k, v in init_weights(cfg.task, cfg.model).items() if not is_bias(k)}
    ds = make_dataset(cfg.task)
    rows = ds.tokens[ds.train_indices]
    return cfg, weights, rows[:, 0], rows[:, 1], ds.labels[ds.train_indices]


@pytest.mark.parametrize("task,p,n_heads", [("add", 10, 4), ("mod_add", 13, 1), ("mod_mul", 7, 3)])
def test_loss_and_gradients_equal_autograd(task, p, n_heads):
    cfg, weights, a, b, labels = _setup(task, p, n_heads)
    leaves = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    ref_logits = last_logits(leaves, a, b, cfg.model)
    loss = loss_fn(ref_logits, labels)
    loss.backward()

    w = {k: v.numpy() for k, v in weights.items()}
    rows = one_layer.Rows(a.numpy(), b.numpy(), p, n_heads)
    logits, saved = one_layer.forward(w, rows, cfg.model)
    ours, dlogits = one_layer.loss_and_dlogits(logits, one_layer.onehot(labels.numpy(), cfg.task.d_vocab_out))
    grads = {k: np.full_like(v, np.nan) for k, v in w.items()}  # every one overwritten
    one_layer.backward(w, rows, saved, dlogits, grads, cfg.model)

    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert ours == pytest.approx(loss.item(), rel=1e-6)  # float32 sums in another order
    for name, leaf in leaves.items():
        scale = leaf.grad.abs().max().item()
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=name)


def test_loss_and_accuracy_match_the_notebook_metrics():
    cfg, weights, a, b, labels = _setup("add", 10, 4)
    w = {k: v.numpy() for k, v in weights.items()}
    logits, _ = one_layer.forward(w, one_layer.Rows(a.numpy(), b.numpy(), 10, 4), cfg.model)
    loss, acc = one_layer.loss_and_accuracy(logits, labels.numpy(),
                                            one_layer.onehot(labels.numpy(), cfg.task.d_vocab_out))
    ref = torch.from_numpy(logits)
    assert loss == pytest.approx(loss_fn(ref, labels).item(), rel=1e-12)
    assert acc == pytest.approx((ref.argmax(1) == labels).double().mean().item())


def test_each_row_is_computed_on_its_own():
    cfg, weights, a, b, labels = _setup("add", 10, 4)
    w = {k: v.numpy() for k, v in weights.items()}
    full, _ = one_layer.forward(w, one_layer.Rows(a.numpy(), b.numpy(), 10, 4), cfg.model)
    head, _ = one_layer.forward(w, one_layer.Rows(a[:5].numpy(), b[:5].numpy(), 10, 4), cfg.model)
    np.testing.assert_allclose(head, full[:5], rtol=1e-6, atol=1e-7)


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

    _, dlogits = one_layer.loss_and_dlogits(logits, onehot)
    assert subnormal_count(dlogits) == 0
    from grok_engine.fast import flush_subnormals

    leaf = torch.from_numpy(logits).requires_grad_(True)
    logits_t = leaf * 1.0  # a non-leaf, as last_logits' output in Trainer._gradient
    logits_t.register_hook(flush_subnormals)
    loss_fn(logits_t, torch.from_numpy(labels)).backward()
    assert subnormal_count(leaf.grad.numpy()) == 0
    np.testing.assert_array_equal(leaf.grad.numpy(), dlogits)


def test_relu_in_place_gives_maximum_with_zero_bit_for_bit():
    """relu_ (np.maximum against an array of zeros, numpy's vector loop) is the ReLU the
    trainer had with the scalar 0: the same bits, signed zeros and NaN included, so the
    numbers of runs trained before it stand."""
    x = np.array([-1.5, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf, 1e-40, -1e-40], np.float32)
    x = np.tile(x, (13, 7))  # a shape whose rows are not a multiple of the vector width
    want = np.maximum(x, 0)
    got = x.copy()
    assert one_layer.relu_(got) is got
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
