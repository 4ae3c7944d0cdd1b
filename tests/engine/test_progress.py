"""Progress measures over a run's checkpoints, against the notebook's get_metrics functions
(the literal cos cube, get_restricted_loss / get_excluded_loss transcribed), and the cache."""

import einops
import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.context import context_from_weights
from grok_engine.errors import GrokError
from grok_engine.model import HookedGrokTransformer
from grok_engine.store import RunStore
from grok_engine.studies import progress as progress_module
from grok_engine.studies import run_study
from grok_engine.studies.progress import (
    MEASURES,
    ProgressStopped,
    cached_measures,
    last_position_activations,
    progress_measures,
)
from grok_engine.train import Checkpoint
from grok_engine.weights import init_weights

TINY = dict(d_model=32, d_mlp=64, n_heads=2, d_head=16)



def make_run(root, epochs=150, p=11):
    cfg = RunConfig().replace(task="mod_add", p=p, frac_train=0.5, epochs=epochs, checkpoint_every=50, **TINY)
    run = RunStore(root).create(cfg)
    run.trainer().run(callback=run)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    return make_run(tmp_path_factory.mktemp("runs"))


def notebook_loss_fn(logits, labels):
    if len(logits.shape) == 3:
        logits = logits[:, -1]
    log_probs = logits.to(torch.float64).log_softmax(dim=-1)
    return -log_probs.gather(dim=-1, index=labels[:, None])[:, 0].mean()


def approx_acts(neuron_acts, p, key_freqs, with_mean):
    """The notebook's approx_neuron_acts loop (restricted loss: with the mean; excluded: without)."""
    approx_neuron_acts = torch.zeros_like(neuron_acts)
    if with_mean:
        approx_neuron_acts += neuron_acts.mean(dim=0)
    a = torch.arange(p)[:, None]
    b = torch.arange(p)[None, :]
    for freq in key_freqs:
        cos_apb_vec = torch.cos(freq * 2 * torch.pi / p * (a + b))
        cos_apb_vec /= cos_apb_vec.norm()
        cos_apb_vec = einops.rearrange(cos_apb_vec, "a b -> (a b) 1")
        approx_neuron_acts += (neuron_acts * cos_apb_vec).sum(dim=0) * cos_apb_vec
        sin_apb_vec = torch.sin(freq * 2 * torch.pi / p * (a + b))
        sin_apb_vec /= sin_apb_vec.norm()
        sin_apb_vec = einops.rearrange(sin_apb_vec, "a b -> (a b) 1")
        approx_neuron_acts += (neuron_acts * sin_apb_vec).sum(dim=0) * sin_apb_vec
    return approx_neuron_acts


def notebook_metrics(run, epoch, key_freqs):
    """The notebook's metric functions, as written, on one checkpoint."""
    cfg, ds = run.config, run.dataset()
    p = cfg.task.p
    dataset, labels = ds.tokens, ds.labels
    train_indices, test_indices = ds.train_indices, ds.test_indices
    model = HookedGrokTransformer(cfg.task, cfg.model, run.load_checkpoint(epoch))
    cos_cube = []
    for freq in range(1, p // 2 + 1):
        a = torch.arange(p)[:, None, None]
        b = torch.arange(p)[None, :, None]
        c = torch.arange(p)[None, None, :]
        cube_predicted_logits = torch.cos(freq * 2 * torch.pi / p * (a + b - c))
        cube_predicted_logits /= cube_predicted_logits.norm()
        cos_cube.append(cube_predicted_logits)
    cos_cube = torch.stack(cos_cube, dim=0)

    with torch.no_grad():
        logits = model(dataset)[:, -1]
        logits = einops.rearrange(logits, "(a b) c -> a b c", a=p, b=p)
        vals = (cos_cube * logits[None, :, :, :]).sum([-3, -2, -1])
        cos_coeffs = vals
        cos_sim = vals / logits.norm()
        residual = logits - (vals[:, None, None, None] * cos_cube).sum(dim=0)
        residual_cos_sim = residual.norm() / logits.norm()

        # get_restricted_loss
        logits, cache = model.run_with_cache(dataset)
        logits = logits[:, -1, :]
        neuron_acts = cache["post", 0, "mlp"][:, -1, :]
        approx_neuron_acts = approx_acts(neuron_acts, p, key_freqs, with_mean=True)
        restricted_logits = approx_neuron_acts @ model.blocks[0].mlp.W_out @ model.unembed.W_U
        restricted_logits += logits.mean(dim=0, keepdim=True) - restricted_logits.mean(dim=0, keepdim=True)
        restricted_loss = notebook_loss_fn(restricted_logits[test_indices], labels[test_indices])
        # get_excluded_loss
        approx_neuron_acts = approx_acts(neuron_acts, p, key_freqs, with_mean=False)
        excluded_neuron_acts = neuron_acts - approx_neuron_acts
        residual_stream_final = excluded_neuron_acts @ model.blocks[0].mlp.W_out + cache["resid_mid", 0][:, -1, :]
        excluded_logits = residual_stream_final @ model.unembed.W_U
        excluded_loss = notebook_loss_fn(excluded_logits[train_indices], labels[train_indices])
        test_loss = notebook_loss_fn(logits[test_indices], labels[test_indices])
    return {"cos_coeffs": cos_coeffs.numpy(), "logit_norm": logits.norm().item(), "cos_sim": cos_sim.numpy(),
            "residual_cos_sim": residual_cos_sim.item(), "restricted_loss": restricted_loss.item(),
            "excluded_loss": excluded_loss.item(), "test_loss": test_loss.item(),
            "train_loss": notebook_loss_fn(logits[train_indices], labels[train_indices]).item(),
            "sum_sq_weights": sum(float(v.double().pow(2).sum()) for v in model.state_dict().values()
                                  if v.is_floating_point() and torch.isfinite(v).all())}


def test_measures_match_the_notebooks_get_metrics(run):
    res = progress_measures(run)
    epochs = run.checkpoint_epochs()
    assert epochs == [0, 50, 100, 150]
    key_freqs = res.scalars["key_frequencies"]
    assert key_freqs and all(1 <= k <= 5 for k in key_freqs)
    measures = res.tables["measures"].columns
    assert list(measures) == ["epoch", *MEASURES]
    cos_coeffs = res.tables["cos_coeffs"].columns
    assert list(cos_coeffs) == ["epoch"] + [f"freq_{k}" for k in range(1, 6)]
    cos_sim = res.grids["cos_sim"]
    assert cos_sim.values.shape == (5, 4) and cos_sim.col_labels == epochs and cos_sim.row_labels == [1, 2, 3, 4, 5]
    for i, epoch in enumerate(epochs):
        ref = notebook_metrics(run, epoch, key_freqs)
        ours = np.array([cos_coeffs[f"freq_{k}"][i] for k in range(1, 6)])
        # a coefficient is at most the logits' norm: compare to 1e-5 of that (float32 sums)
        assert np.allclose(ours, ref["cos_coeffs"], rtol=1e-5, atol=1e-5 * ref["logit_norm"]), epoch
        assert np.allclose(cos_sim.values[:, i], ref["cos_sim"], rtol=1e-5, atol=1e-5), epoch
        for name in ("residual_cos_sim", "restricted_loss", "excluded_loss", "test_loss", "train_loss",
                     "sum_sq_weights"):
            assert measures[name][i] == pytest.approx(ref[name], rel=1e-5, abs=1e-6), (epoch, name)
        assert measures["test_restricted_ratio"][i] == pytest.approx(ref["test_loss"] / ref["restricted_loss"], rel=1e-5)
        for name in ("gini_W_E", "gini_W_logit"):
            assert 0.0 <= measures[name][i] <= 1.0


def test_gini_measures_use_the_fourier_component_norms(run):
    from grok_engine.fourier_basis import fourier_basis

    res = progress_measures(run)
    w = run.load_checkpoint(150)
    fb = fourier_basis(11).basis.double()

    def pairwise_gini(x):
        x = x.numpy()
        return np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum())

    W_logit = w["blocks.0.mlp.W_out"].double() @ w["unembed.W_U"].double()
    assert res.tables["measures"].columns["gini_W_E"][-1] == pytest.approx(
        pairwise_gini((fb @ w["embed.W_E"][:-1].double()).norm(dim=-1)), rel=1e-9)
    assert res.tables["measures"].columns["gini_W_logit"][-1] == pytest.approx(
        pairwise_gini((W_logit @ fb.T).norm(dim=0)), rel=1e-9)


def test_last_position_activations_equal_the_hooked_models_cache():
    for extra in ({}, {"n_layers": 2, "normalization": "LN"}):
        cfg = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, **TINY, **extra)
        ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
        last = cfg.model.n_layers - 1
        logits, resid_mid, post = last_position_activations(ctx.weights, ctx.tokens[:, 0], ctx.tokens[:, 1],
                                                            cfg.model)
        assert torch.allclose(logits, ctx.logits, atol=1e-5)
        assert torch.allclose(resid_mid, ctx.cache["resid_mid", last][:, -1], atol=1e-5)
        assert torch.allclose(post, ctx.cache["post", last, "mlp"][:, -1], atol=1e-5)


def hooked_excluded_loss(run, epoch, key_freqs):
    """The excluded loss as an intervention: the model itself, with the key-frequency part
    of every neuron at '=' removed by a hook on the last layer's hook_post."""
    cfg, ds = run.config, run.dataset()
    last = cfg.model.n_layers - 1
    model = HookedGrokTransformer(cfg.task, cfg.model, run.load_checkpoint(epoch))

    def remove_key_part(post, hook):
        out = post.clone()
        out[:, -1] = post[:, -1] - approx_acts(post[:, -1], cfg.task.p, key_freqs, with_mean=False)
        return out

    with torch.no_grad():
        logits = model.run_with_hooks(ds.tokens, fwd_hooks=[(f"blocks.{last}.mlp.hook_post", remove_key_part)])
    return notebook_loss_fn(logits[ds.train_indices], ds.labels[ds.train_indices]).item()


def test_excluded_loss_is_the_model_with_the_key_parts_hooked_out(run, tmp_path):
    res = progress_measures(run)
    keys = res.scalars["key_frequencies"]
    assert res.tables["measures"].columns["excluded_loss"][-1] == pytest.approx(
        hooked_excluded_loss(run, 150, keys), rel=1e-5)
    # with LayerNorm and two layers (beyond the notebook's model) the same holds
    cfg = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, epochs=30, checkpoint_every=30,
                              n_layers=2, normalization="LN", **TINY)
    deep = RunStore(tmp_path).create(cfg)
    deep.trainer().run(callback=deep)
    res = progress_measures(deep)
    keys = res.scalars["key_frequencies"]
    for i, epoch in enumerate(deep.checkpoint_epochs()):
        assert res.tables["measures"].columns["excluded_loss"][i] == pytest.approx(
            hooked_excluded_loss(deep, epoch, keys), rel=1e-5), epoch


def test_cache_is_reused_and_only_new_checkpoints_are_computed(tmp_path, monkeypatch):
    run = make_run(tmp_path / "runs", epochs=100)
    computed = []
    first = progress_measures(run, progress_callback=lambda done, total, epoch: computed.append(epoch))
    assert computed == [0, 50, 100] and first.scalars["n_computed"] == 3

    # second call: everything from disk, nothing computed
    def refuse(self, w):
        raise AssertionError("recomputed a cached checkpoint")

    with monkeypatch.context() as m:
        m.setattr(progress_module._Pass, "measure", refuse)
        m.setattr(progress_module, "final_key_frequencies", refuse)  # same final checkpoint: keys cached
        second = progress_measures(run)
    assert second.scalars["n_computed"] == 0
    for name in first.tables:
        for col, values in first.tables[name].columns.items():
            assert np.array_equal(np.asarray(values), np.asarray(second.tables[name].columns[col])), (name, col)
    assert np.array_equal(first.grids["cos_sim"].values, second.grids["cos_sim"].values)

    # a checkpoint appended (the final weights again, so the key frequencies stay): only it is computed
    final = run.load_checkpoint(100)
    run.write_checkpoint(Checkpoint(150, final, run.resume_state(100), run.metrics()))
    computed.clear()
    third = progress_measures(run, progress_callback=lambda done, total, epoch: computed.append(epoch))
    assert computed == [150] and third.scalars["n_computed"] == 1
    measures = third.tables["measures"].columns
    assert list(measures["epoch"]) == [0, 50, 100, 150]
    for col in MEASURES:
        assert np.array_equal(np.asarray(measures[col])[:3], np.asarray(first.tables["measures"].columns[col]))
        assert measures[col][3] == pytest.approx(measures[col][2], rel=1e-12)

    # a new version of the measures invalidates the cache
    monkeypatch.setattr(progress_module, "VERSION", "progress-test")
    computed.clear()
    progress_measures(run, progress_callback=lambda done, total, epoch: computed.append(epoch))
    assert computed == [0, 50, 100, 150]


def test_stopped_between_checkpoints_caches_what_it_computed(tmp_path):
    run = make_run(tmp_path / "runs", epochs=150)
    computed = []
    with pytest.raises(ProgressStopped):
        progress_measures(run, progress_callback=lambda done, total, epoch: computed.append(epoch),
                          should_stop=lambda: len(computed) >= 2)
    assert computed == [0, 50]
    assert cached_measures(run) is None  # the cache lacks checkpoints 100 and 150
    computed.clear()
    rest = progress_measures(run, progress_callback=lambda done, total, epoch: computed.append(epoch))
    assert computed == [100, 150] and rest.scalars["n_computed"] == 2
    whole = progress_measures(run, save_cache=False)  # from the cache, now complete
    fresh = progress_measures(make_run(tmp_path / "again", epochs=150), save_cache=False)
    for name in ("measures", "cos_coeffs"):
        for col, values in fresh.tables[name].columns.items():
            assert np.allclose(np.asarray(values), np.asarray(whole.tables[name].columns[col]),
                               rtol=1e-9, atol=0), (name, col)
    assert whole.scalars["key_frequencies"] == fresh.scalars["key_frequencies"]


def test_registry_entry_needs_a_run():
    cfg = RunConfig().replace(task="mod_add", p=5, frac_train=0.5, **TINY)
    ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
    with pytest.raises(GrokError, match="saved run"):
        run_study("progress", ctx)


def test_a_run_without_checkpoints_is_refused(tmp_path):
    cfg = RunConfig().replace(task="mod_add", p=5, frac_train=0.5, **TINY)
    run = RunStore(tmp_path).create(cfg)
    with pytest.raises(GrokError, match="no checkpoints"):
        progress_measures(run)


@pytest.mark.parametrize("task,p", [("add", 6), ("mod_div", 7), ("mod_sub", 7)])
def test_other_tasks_run_without_nan(tmp_path, task, p):
    cfg = RunConfig().replace(task=task, p=p, frac_train=0.5, epochs=10, checkpoint_every=10, **TINY)
    run = RunStore(tmp_path).create(cfg)
    run.trainer().run(callback=run)
    res = progress_measures(run)
    for name in MEASURES:
        assert np.isfinite(np.asarray(res.tables["measures"].columns[name])).all(), name
    assert res.grids["cos_sim"].values.shape == (p // 2, len(run.checkpoint_epochs()))
    assert ("note" in res.scalars) == (task != "mod_sub")
