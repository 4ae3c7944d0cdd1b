"""The fourier study and grok_engine.fourier_basis, checked against the notebook's own code
(transcribed loops and the literal cos cube) on tiny models, and key-frequency detection
on embeddings built from known frequencies."""

import math

import einops
import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.context import context_from_weights
from grok_engine.errors import GrokError
from grok_engine.fourier_basis import (
    CosCube,
    embedding_frequency_shares,
    fourier_basis,
    gini,
    find_key_frequencies,
    key_frequencies,
    neuron_freq_energy,
    neuron_freq_fractions,
    neuron_frequency_shares,
    top_frequencies,
    trig_rows,
)
from grok_engine.studies import run_study
from grok_engine.train import Trainer
from grok_engine.weights import init_weights

TINY = dict(d_model=32, d_mlp=64, n_heads=2, d_head=16)


def notebook_fourier_basis(p):
    """The notebook's cell, as written."""
    fourier_basis = []
    fourier_basis.append(torch.ones(p))
    for freq in range(1, p // 2 + 1):
        fourier_basis.append(torch.sin(torch.arange(p) * 2 * torch.pi * freq / p))
        fourier_basis.append(torch.cos(torch.arange(p) * 2 * torch.pi * freq / p))
    fourier_basis = torch.stack(fourier_basis, dim=0)
    return fourier_basis / fourier_basis.norm(dim=-1, keepdim=True)


def notebook_loss_fn(logits, labels):
    if len(logits.shape) == 3:
        logits = logits[:, -1]
    log_probs = logits.to(torch.float64).log_softmax(dim=-1)
    return -log_probs.gather(dim=-1, index=labels[:, None])[:, 0].mean()


def embedding_with_freqs(p, d_model, freqs, noise=0.0, seed=0):
    """W_E [p, d_model] whose rows are cos/sin of ``freqs`` mixed by random directions."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(p, dtype=torch.float64)
    W = torch.zeros(p, d_model, dtype=torch.float64)
    for k in freqs:
        u, v = torch.randn(2, d_model, generator=gen, dtype=torch.float64)
        W += torch.cos(2 * math.pi * k * x / p)[:, None] * u + torch.sin(2 * math.pi * k * x / p)[:, None] * v
    return (W + noise * torch.randn(p, d_model, generator=gen, dtype=torch.float64)).float()



@pytest.fixture(scope="module")
def trained_ctx(one_thread):
    """A tiny mod_add model trained until it fits its train split (not grokked)."""
    cfg = RunConfig().replace(task="mod_add", p=11, frac_train=0.6, epochs=250, **TINY)
    trainer = Trainer(cfg)
    trainer.run()
    return context_from_weights(cfg, trainer.weights(), epoch=250)


# -- the basis ----------------------------------------------------------------------------
def test_basis_is_the_notebooks_for_odd_p_and_orthonormal_for_any_p():
    fb = fourier_basis(11)
    assert torch.allclose(fb.basis.float(), notebook_fourier_basis(11), atol=1e-6)
    assert fb.names[:3] == ["Constant", "Sin 1", "Cos 1"] and fb.names[-1] == "Cos 5"
    for p in (2, 7, 10, 12):
        fb = fourier_basis(p)
        assert fb.basis.shape == (p, p)
        assert torch.allclose(fb.basis @ fb.basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12), p
    names = fourier_basis(10).names
    assert "Sin 5" not in names and names[-1] == "Cos 5" and names[-3:-1] == ["Sin 4", "Cos 4"]


def test_gini_matches_the_pairwise_definition():
    x = np.array([0.1, 3.0, 0.2, 0.2, 5.0])
    pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum())
    assert gini(x) == pytest.approx(pairwise)
    assert gini(np.ones(8)) == pytest.approx(0.0)
    assert gini(np.zeros(4)) == 0.0


def test_trig_rows_are_normalised_and_drop_the_vanishing_nyquist_sine():
    p = 10
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    rows = trig_rows(a + b, [2, 5], p)  # cos 2, cos 5, sin 2, sin 5 (= 0 for even p)
    norms = rows.norm(dim=-1)
    assert torch.allclose(norms, torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))


# -- key frequencies found from the data ---------------------------------------------------
@pytest.mark.parametrize("p,freqs", [(31, [4, 9, 13]), (23, [7]), (113, [17, 25, 32, 47]), (12, [2, 6])])
def test_key_frequencies_recovers_the_frequencies_an_embedding_was_built_from(p, freqs):
    W_E = embedding_with_freqs(p, 40, freqs, noise=0.02)
    shares = embedding_frequency_shares(W_E, fourier_basis(p))
    assert key_frequencies(shares) == freqs


@pytest.mark.parametrize("p,freqs", [(53, [12, 23, 26]), (31, [5]), (113, [17, 25, 32, 47])])
def test_key_frequencies_from_neurons_built_with_known_frequencies(p, freqs):
    """Neurons like a grokked model's: ReLU(cos(w a + phi) + cos(w b + psi)) at one key
    frequency each, plus noise; the ReLU's harmonics (2w, ...) must not count as key."""
    gen = torch.Generator().manual_seed(2)
    per_freq = 24
    k = torch.tensor(freqs).repeat_interleave(per_freq).to(torch.float64)  # [neurons]
    phi, psi = 2 * math.pi * torch.rand(2, len(k), generator=gen, dtype=torch.float64)
    x = torch.arange(p, dtype=torch.float64)
    wa = torch.cos(2 * math.pi * k * x[:, None] / p + phi)  # [a, neuron]
    wb = torch.cos(2 * math.pi * k * x[:, None] / p + psi)  # [b, neuron]
    acts = torch.relu(wa[:, None, :] + wb[None, :, :]) + 0.05 * torch.randn(p, p, len(k), generator=gen,
                                                                              dtype=torch.float64)
    assert key_frequencies(neuron_frequency_shares(acts, fourier_basis(p))) == freqs


def test_a_flat_spectrum_has_no_key_frequency():
    gen = torch.Generator().manual_seed(1)
    W_E = torch.randn(113, 128, generator=gen)  # a random embedding: no frequency stands out
    shares = embedding_frequency_shares(W_E, fourier_basis(113))
    assert find_key_frequencies(shares) == []
    top = top_frequencies(shares)
    assert len(top) == 5 and list(np.argsort(-shares.numpy(), kind="stable")[:5] + 1) == top
    # the progress measures restrict to every frequency then
    assert key_frequencies(shares) == list(range(1, 57))
    # a small model that uses every frequency equally
    W_E = embedding_with_freqs(7, 32, [1, 2, 3], noise=0.01)
    assert find_key_frequencies(embedding_frequency_shares(W_E, fourier_basis(7))) == []


def test_fourier_study_without_a_clear_drop_says_none_found_and_shows_the_top_five():
    """The issue's case: a model mid-way (here untrained, p=23) has no 4x drop in its
    neurons' shares; the study must not call all 11 frequencies key."""
    cfg = RunConfig().replace(task="mod_add", p=23, frac_train=0.5, **TINY)
    ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
    res = run_study("fourier", ctx)
    shares = np.asarray(res.tables["frequency_shares"].columns["neuron_share"])
    ratios = np.sort(shares)[::-1][:-1] / np.sort(shares)[::-1][1:]
    assert ratios.max() < 4  # no clear drop, so none is key
    assert res.scalars["key_frequencies"] == [] and res.scalars["key_frequencies_found"] is False
    assert res.scalars["top_frequencies"] == list(np.argsort(-shares, kind="stable")[:5] + 1)
    assert not np.asarray(res.tables["frequency_shares"].columns["key"]).any()
    periodic = res.scalars["periodicity_frequencies"]
    assert periodic == sorted(res.scalars["top_frequencies"])
    assert list(res.tables["logit_periodicity"].columns["frequency"]) == periodic
    assert "no key frequency found" in res.tables["logit_periodicity"].title


def test_fourier_study_finds_the_frequencies_planted_in_the_model():
    cfg = RunConfig().replace(task="mod_add", p=29, frac_train=0.5, **TINY)
    weights = init_weights(cfg.task, cfg.model)
    weights["embed.W_E"][:-1] = embedding_with_freqs(29, 32, [3, 11], noise=0.01)
    res = run_study("fourier", context_from_weights(cfg, weights))
    assert res.scalars["key_frequencies"] == [3, 11] and res.scalars["key_frequencies_found"] is True
    assert res.scalars["periodicity_frequencies"] == [3, 11]
    shares = res.tables["frequency_shares"].columns
    assert list(np.asarray(shares["frequency"])[np.asarray(shares["key"]) == 1]) == [3, 11]


def test_neuron_freq_fractions_of_neurons_with_known_responses():
    """Over (a, b): a neuron cos(w3 a) + sin(w3 b) + 2 cos(w3 a) cos(w3 b) lies in frequency 3's
    terms (fraction 1); one mixing frequencies 2 and 4 half and half is split 0.5 / 0.5;
    cos(w2 a) cos(w4 b) is in no frequency's terms (fraction 0); a constant one is 0."""
    p = 13
    fb = fourier_basis(p)
    w = 2 * math.pi * torch.arange(p, dtype=torch.float64) / p
    a, b = w[:, None], w[None, :]
    neurons = [torch.cos(3 * a) + torch.sin(3 * b) + 2 * torch.cos(3 * a) * torch.cos(3 * b) + 5,
               torch.cos(2 * a) + torch.cos(4 * b),
               torch.cos(2 * a) * torch.cos(4 * b),
               torch.full((p, p), 3.0, dtype=torch.float64)]
    acts = torch.stack(neurons, dim=-1)  # [a, b, neuron]
    frac = neuron_freq_fractions(*neuron_freq_energy(acts, fb))  # [n_freqs, neuron]
    assert frac.shape == (6, 4)
    assert frac[2, 0] == pytest.approx(1.0) and frac[:, 0].sum() == pytest.approx(1.0)
    assert frac[1, 1] == pytest.approx(0.5) and frac[3, 1] == pytest.approx(0.5)
    assert torch.allclose(frac[:, 2], torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.equal(frac[:, 3], torch.zeros(6, dtype=torch.float64))


# -- the study against the notebook's cells --------------------------------------------------
def test_fourier_study_matches_the_notebooks_cells(trained_ctx):
    ctx = trained_ctx
    p, d_mlp = ctx.p, ctx.config.model.d_mlp
    res = run_study("fourier", ctx, neuron=5)
    fb = notebook_fourier_basis(p)
    W_E = ctx.W_E
    neuron_acts = ctx.neuron_acts

    # embedding in the Fourier basis
    norms = np.asarray(res.tables["embedding_norms"].columns["norm"])
    assert np.allclose(norms, (fb @ W_E).norm(dim=-1).numpy(), rtol=1e-5, atol=1e-6)

    # neuron clusters: the notebook's neuron_freq_norm loop
    fourier_neuron_acts = fb @ einops.rearrange(neuron_acts, "(a b) neuron -> neuron a b", a=p, b=p) @ fb.T
    fourier_neuron_acts[:, 0, 0] = 0.
    neuron_freq_norm = torch.zeros(p // 2, d_mlp)
    for freq in range(0, p // 2):
        for x in [0, 2 * (freq + 1) - 1, 2 * (freq + 1)]:
            for y in [0, 2 * (freq + 1) - 1, 2 * (freq + 1)]:
                neuron_freq_norm[freq] += fourier_neuron_acts[:, x, y] ** 2
    total = fourier_neuron_acts.pow(2).sum(dim=[-1, -2])[None, :]
    neuron_freq_norm = torch.where(total > 0, neuron_freq_norm / total, 0.0)  # dead neurons: 0, not NaN
    assert np.allclose(res.grids["neuron_freq_norm"].values, neuron_freq_norm.numpy(), atol=1e-5)
    clusters = res.tables["neuron_clusters"].columns
    best = neuron_freq_norm.max(dim=0)
    expected = torch.where(best.values > 0.85, best.indices + 1, 0).numpy()
    assert np.array_equal(np.asarray(clusters["frequency"]), expected)
    assert np.allclose(np.asarray(clusters["frac_explained"]), best.values.numpy(), atol=1e-5)
    sizes = res.tables["cluster_sizes"].columns
    assert sum(sizes["n_neurons"]) == d_mlp

    # W_logit in the Fourier basis, and neuron 5's 2-D transform
    W_logit = ctx.weights["blocks.0.mlp.W_out"] @ ctx.weights["unembed.W_U"]
    ref = (W_logit @ fb.T).norm(dim=0)
    assert np.allclose(np.asarray(res.tables["w_logit_norms"].columns["norm"]), ref.numpy(), rtol=1e-5, atol=1e-6)
    ref = fb @ neuron_acts[:, 5].reshape(p, p) @ fb.T
    # float32 sums in another order: tolerance relative to the grid's scale (values ~20)
    assert np.allclose(res.grids["neuron_fourier"].values, ref.numpy(), atol=2e-6 * np.abs(ref.numpy()).max())
    assert res.grids["neuron_fourier"].row_labels == res.grids["neuron_fourier"].col_labels == fourier_basis(p).names

    # logit periodicity: the literal cubes (of the key frequencies, else of the top five)
    key_freqs = res.scalars["periodicity_frequencies"]
    assert key_freqs == (res.scalars["key_frequencies"] or sorted(res.scalars["top_frequencies"]))
    all_logits = einops.rearrange(ctx.logits, "(a b) c -> a b c", a=p, b=p)
    approximated_logits = torch.zeros_like(all_logits)
    coeffs, sims = [], []
    for freq in key_freqs:
        a = torch.arange(p)[:, None, None]
        b = torch.arange(p)[None, :, None]
        c = torch.arange(p)[None, None, :]
        cube_predicted_logits = torch.cos(freq * 2 * torch.pi / p * (a + b - c))
        cube_predicted_logits /= cube_predicted_logits.norm()
        coeff = (all_logits * cube_predicted_logits).sum()
        coeffs.append(coeff.item())
        sims.append((coeff / all_logits.norm()).item())
        approximated_logits += coeff * cube_predicted_logits
    residual = all_logits - approximated_logits
    table = res.tables["logit_periodicity"].columns
    assert list(table["frequency"]) == key_freqs
    assert np.allclose(np.asarray(table["coefficient"]), coeffs, rtol=1e-5, atol=1e-5)
    assert np.allclose(np.asarray(table["cos_sim"]), sims, rtol=1e-5, atol=1e-6)
    assert res.scalars["residual_fraction"] == pytest.approx((residual.norm() / all_logits.norm()).item(), rel=1e-5)
    labels = ctx.labels
    assert res.scalars["loss"] == pytest.approx(notebook_loss_fn(all_logits.reshape(p * p, p), labels).item(), rel=1e-5)
    assert res.scalars["approx_loss"] == pytest.approx(
        notebook_loss_fn(approximated_logits.reshape(p * p, p), labels).item(), rel=1e-5)


def test_key_freqs_option_overrides_the_found_ones(trained_ctx):
    res = run_study("fourier", trained_ctx, key_freqs="4, 2")
    assert res.scalars["key_frequencies"] == [2, 4]
    assert list(res.tables["logit_periodicity"].columns["frequency"]) == [2, 4]


def test_mod_sub_is_projected_on_cos_w_a_minus_b_minus_c():
    p = 7
    cfg = RunConfig().replace(task="mod_sub", p=p, frac_train=0.5, **TINY)
    ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
    res = run_study("fourier", ctx, key_freqs=[1, 2, 3])
    logits = einops.rearrange(ctx.logits, "(a b) c -> a b c", a=p, b=p)
    a = torch.arange(p)[:, None, None]
    b = torch.arange(p)[None, :, None]
    c = torch.arange(p)[None, None, :]
    for freq, coeff in zip([1, 2, 3], res.tables["logit_periodicity"].columns["coefficient"]):
        cube = torch.cos(freq * 2 * torch.pi / p * (a - b - c))
        assert coeff == pytest.approx((logits * cube / cube.norm()).sum().item(), rel=1e-5, abs=1e-6)


def test_cos_cube_with_rows_missing_matches_the_literal_sum():
    """mod_div lacks b = 0: the factorised norm and coefficients still equal the cube's."""
    p = 7
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    keep = b != 0
    logits = torch.randn(int(keep.sum()), p, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cube = CosCube.build(a[keep] + b[keep], p, p)
    c = torch.arange(p)
    for i, k in enumerate(cube.freqs):
        literal = torch.cos(2 * math.pi * int(k) / p * ((a[keep] + b[keep])[:, None] - c[None, :]).double())
        assert cube.coefficients(logits)[i].item() == pytest.approx(
            ((logits * literal).sum() / literal.norm()).item(), rel=1e-9)
    one = torch.zeros(len(cube.freqs), dtype=torch.float64)
    one[1] = 1.0
    literal = torch.cos(2 * math.pi * 2 / p * ((a[keep] + b[keep])[:, None] - c[None, :]).double())
    assert torch.allclose(cube.reconstruct(one), literal / literal.norm(), atol=1e-12)


def test_add_task_gets_the_basis_and_embedding_norms_with_a_note():
    cfg = RunConfig().replace(task="add", p=10, **TINY)
    res = run_study("fourier", context_from_weights(cfg, init_weights(cfg.task, cfg.model)))
    assert set(res.tables) == {"embedding_norms"} and set(res.grids) == {"basis"}
    assert res.grids["basis"].values.shape == (10, 10)
    assert "not periodic" in res.scalars["note"]


def test_mod_div_with_absent_rows_runs_and_has_no_nan():
    cfg = RunConfig().replace(task="mod_div", p=7, frac_train=0.5, **TINY)
    res = run_study("fourier", context_from_weights(cfg, init_weights(cfg.task, cfg.model)))
    assert not np.isnan(res.grids["neuron_freq_norm"].values).any()
    assert not np.isnan(np.asarray(res.tables["logit_periodicity"].columns["cos_sim"])).any()
    assert "note" in res.scalars


@pytest.mark.parametrize("options,word", [({"neuron": 64}, "neuron=64"), ({"neuron": -1}, "neuron=-1"),
                                          ({"threshold": 1.5}, "threshold=1.5"),
                                          ({"key_freqs": [0]}, "key_freqs"), ({"key_freqs": "6"}, "1..5")])
def test_bad_options_are_refused_by_name(trained_ctx, options, word):
    with pytest.raises(GrokError, match=word.replace(".", r"\.")):
        run_study("fourier", trained_ctx, **options)
