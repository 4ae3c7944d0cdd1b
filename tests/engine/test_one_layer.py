"""The hand-written backward of ``grok_engine.one_layer`` against autograd on the fast forward."""

from __future__ import annotations

import pytest
import torch

from grok_engine import one_layer
from grok_engine.config import RunConfig, TaskConfig, ModelConfig
from grok_engine.fast import last_logits, loss_fn
from grok_engine.tasks import make_dataset
from grok_engine.weights import init_weights, is_bias


def _setup(task: str, p: int, act_fn: str, n_heads: int, seed: int = 3):
    cfg = RunConfig(task=TaskConfig(task=task, p=p, frac_train=0.6),
                    model=ModelConfig(n_heads=n_heads, d_model=24, d_head=8, d_mlp=40,
                                      act_fn=act_fn, seed=seed))
    weights = {k: v for k, v in init_weights(cfg.task, cfg.model).items() if not is_bias(k)}
    ds = make_dataset(cfg.task)
    rows = ds.tokens[ds.train_indices]
    return cfg, weights, rows[:, 0], rows[:, 1], ds.labels[ds.train_indices]


@pytest.mark.parametrize("task,p,act_fn,n_heads", [
    ("add", 10, "relu", 4), ("mod_add", 13, "gelu", 1), ("mod_mul", 7, "relu", 3)])
def test_gradients_equal_autograd(task, p, act_fn, n_heads):
    cfg, weights, a, b, labels = _setup(task, p, act_fn, n_heads)
    leaves = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    loss = loss_fn(last_logits(leaves, a, b, cfg.model), labels)
    loss.backward()

    rows = one_layer.Rows(a, b, p)
    logits, saved = one_layer.forward(weights, rows, cfg.model)
    ours, dlogits = one_layer.loss_and_dlogits(
        logits, labels, one_layer.neg_onehot_over_n(labels, cfg.task.d_vocab_out))
    grads = {k: torch.full_like(v, float("nan")) for k, v in weights.items()}  # all overwritten
    one_layer.backward(weights, rows, saved, dlogits, grads, cfg.model)

    torch.testing.assert_close(ours, loss.detach(), rtol=1e-6, atol=0)  # float32 sums in another order
    for name, leaf in leaves.items():
        scale = leaf.grad.abs().max().item()
        torch.testing.assert_close(grads[name], leaf.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_each_row_is_computed_on_its_own():
    cfg, weights, a, b, labels = _setup("add", 10, "relu", 4)
    rows = one_layer.Rows(a, b, 10)
    full, _ = one_layer.forward(weights, rows, cfg.model)
    head, _ = one_layer.forward(weights, one_layer.Rows(a[:5], b[:5], 10), cfg.model)
    torch.testing.assert_close(head, full[:5])


def test_supported_only_for_the_notebooks_shape():
    names = set(one_layer.WEIGHTS)
    assert one_layer.supported(ModelConfig(), names)
    assert not one_layer.supported(ModelConfig(n_layers=2), names)
    assert not one_layer.supported(ModelConfig(normalization="LN"), names)
    assert not one_layer.supported(ModelConfig(), names | {"blocks.0.mlp.b_in"})
