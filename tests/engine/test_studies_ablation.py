"""The PC-ablation study against the notebook's per-row ``ablate_pc2_hook``."""

import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.context import context_from_weights
from grok_engine.errors import GrokError
from grok_engine.studies import run_study
from grok_engine.train import Trainer
from grok_engine.weights import init_weights

TINY = dict(d_model=32, d_mlp=64, n_heads=2, d_head=16)



@pytest.fixture(scope="module")
def add_ctx(one_thread):
    """The notebook's task (integer addition) at p=10 on a tiny model, trained a little."""
    cfg = RunConfig().replace(task="add", p=10, epochs=300, **TINY)
    trainer = Trainer(cfg)
    trainer.run()
    return context_from_weights(cfg, trainer.weights(), epoch=300)


def notebook_ablation(ctx, keep):
    """The notebook's cells: centred SVD, then a hook that loops over rows and positions."""
    W_E = ctx.W_E
    W_E_mean = W_E.mean(dim=0, keepdim=True)
    U, S, Vt = torch.linalg.svd(W_E - W_E_mean, full_matrices=False)
    principal_components = Vt
    W_E_mean_1d = W_E_mean.squeeze(0)
    kept = [principal_components[k - 1] for k in keep]

    def ablate_pc_hook(activation, hook):
        ablated_activation = activation.clone()
        for batch_idx in range(activation.shape[0]):
            for seq_idx in [0, 1]:
                emb = activation[batch_idx, seq_idx, :]
                emb_centered = emb - W_E_mean_1d
                emb_centered_ablated = sum(torch.dot(emb_centered, pc) * pc for pc in kept)
                ablated_activation[batch_idx, seq_idx, :] = emb_centered_ablated + W_E_mean_1d
        return ablated_activation

    with torch.no_grad():
        original_logits = ctx.model(ctx.tokens)
        ablated_logits = ctx.model.run_with_hooks(ctx.tokens, fwd_hooks=[("hook_embed", ablate_pc_hook)])
    labels = ctx.labels
    original_accuracy = (original_logits[:, -1].argmax(-1) == labels).float().mean().item()
    predicted = ablated_logits[:, -1].argmax(-1)
    ablated_accuracy = (predicted == labels).float().mean().item()
    failing_pairs = []
    for idx in torch.where(predicted != labels)[0].tolist():
        a, b = ctx.tokens[idx, 0].item(), ctx.tokens[idx, 1].item()
        failing_pairs.append((labels[idx].item(), a, b, predicted[idx].item()))
    failing_pairs.sort(key=lambda r: (r[0], r[1], r[2]))  # sort_values(['True Sum', 'a', 'b'])
    return original_accuracy, ablated_accuracy, failing_pairs, ablated_logits[:, -1]


@pytest.mark.parametrize("keep", [(1,), (1, 2), (2, 3, 5)])
def test_batched_hook_matches_the_notebooks_per_row_hook(add_ctx, keep):
    res = run_study("ablation", add_ctx, keep=keep)
    acc_before, acc_after, failing, _ = notebook_ablation(add_ctx, keep)
    assert res.scalars["acc_before"] == pytest.approx(acc_before)
    assert res.scalars["acc_after"] == pytest.approx(acc_after)
    assert res.scalars["n_failures"] == len(failing)
    cols = res.tables["failures"].columns
    got = list(zip(*(np.asarray(cols[c]).tolist() for c in ("true", "a", "b", "predicted"))))
    assert got == failing
    grid = res.grids["failures"].values
    expected = np.zeros((10, 10))
    for _, a, b, _ in failing:
        expected[a, b] = 1
    assert np.array_equal(grid, expected)
    assert res.grids["failures"].centered is False


def test_projected_W_E_gives_the_notebooks_hooked_logits(add_ctx):
    from grok_engine.studies.ablation import ablated_logits
    from grok_engine.studies.embedding import embedding_pca

    mean, components, _, _ = embedding_pca(add_ctx.W_E)
    ours = ablated_logits(add_ctx, mean.float(), components[:2].float())
    *_, theirs = notebook_ablation(add_ctx, (1, 2))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def test_keeping_every_component_changes_nothing(add_ctx):
    k = min(add_ctx.p, add_ctx.config.model.d_model)
    res = run_study("ablation", add_ctx, keep=tuple(range(1, k + 1)))
    assert res.scalars["acc_after"] == pytest.approx(res.scalars["acc_before"])


def test_keep_accepts_an_int_or_text(add_ctx):
    assert run_study("ablation", add_ctx, keep=2).scalars["keep"] == [2]
    assert run_study("ablation", add_ctx, keep="2, 1").scalars["keep"] == [1, 2]


@pytest.mark.parametrize("keep,word", [((), "empty"), ((0,), "out of range"), ((11,), "out of range"),
                                       ("x", "not a list"), ((1.5,), "out of range")])
def test_bad_keep_is_refused_with_the_allowed_range(add_ctx, keep, word):
    with pytest.raises(GrokError, match=word) as err:
        run_study("ablation", add_ctx, keep=keep)
    assert "keep=" in str(err.value) and "1..10" in str(err.value)


def test_absent_rows_are_nan_in_the_failure_grid():
    cfg = RunConfig().replace(task="mod_div", p=7, frac_train=0.5, **TINY)
    ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
    res = run_study("ablation", ctx)
    grid = res.grids["failures"].values
    assert np.isnan(grid[:, 0]).all() and not np.isnan(grid[:, 1:]).any()
    assert res.scalars["n_rows"] == 42
