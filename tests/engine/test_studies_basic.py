"""The embedding, attention, probe and neurons studies against the notebook's way (the
curves study: test_studies_curves.py).

Each batched study (one activation cache over every input) is compared with a slow
reference written as the notebook writes it: one ``run_with_hooks`` call per (a, b) pair,
a ``pearsonr`` call per neuron, sklearn for the regressions. Tiny random models with
non-zero biases (tests/engine/conftest.py), tolerance 1e-5.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from grok_engine.errors import GrokError
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import STUDY_MODULES, get_study, run_study
from grok_engine.studies.embedding import embedding_pca

ATOL = 1e-5
# what each study promises the UI and the CSV export: tables, grids, scalars
CONTRACT = {
    "curves": ({"curves", "phases"}, set(),
               {"memorization_end", "circuit_formation_end", "cleanup_end"}),
    "embedding": ({"pca", "pc_scores", "pc1_pc2", "singular_values"}, {"pc_scores"},
                  {"pc1_ratio", "pc2_ratio"}),
    "attention": ({"mean_pattern"}, {"mean_pattern", "head0_to_a", "head0_to_b", "head1_to_a", "head1_to_b"},
                  set()),
    "probe": ({"probe", "predictions"}, set(), {"r2", "mse", "baseline_r2", "baseline_mse"}),
    "neurons": ({"ranking", "pc_fit"}, {"pre", "post"}, {"n_above", "n_positive_above", "fit_r2"}),
}


# -- the notebook's way: one forward pass per input pair ---------------------------------
# id(ctx) -> (ctx, activations); holding ctx keeps its id from being reused by a new one
_REFERENCE: dict[int, tuple[object, dict[str, np.ndarray]]] = {}


def per_sample(ctx) -> dict[str, np.ndarray]:
    """Activations at '=' captured with one ``run_with_hooks`` per row, as the notebook's
    loops do: post/pre [N, d_mlp] (float32 as captured), pattern [N, head, key]."""
    if id(ctx) in _REFERENCE:
        return _REFERENCE[id(ctx)][1]
    store: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(activation, hook):
            store[name] = activation.detach().clone()
            return activation
        return hook

    hooks = [("blocks.0.mlp.hook_post", capture("post")), ("blocks.0.mlp.hook_pre", capture("pre")),
             ("blocks.0.attn.hook_pattern", capture("pattern"))]
    post, pre, pattern = [], [], []
    with torch.no_grad():
        for a, b, equals in ctx.tokens.tolist():
            store.clear()
            ctx.model.run_with_hooks(torch.tensor([[a, b, equals]]), fwd_hooks=hooks)
            post.append(store["post"][0, 2].numpy())
            pre.append(store["pre"][0, 2].numpy())
            pattern.append(store["pattern"][0, :, 2, :].numpy())
    out = {"post": np.array(post), "pre": np.array(pre), "pattern": np.array(pattern)}
    _REFERENCE[id(ctx)] = (ctx, out)
    return out


def reference_grid(ctx, values: np.ndarray) -> np.ndarray:
    """[N] per-row values -> [p, p] over (a, b), filled in a loop; NaN where a row is absent."""
    grid = np.full((ctx.p, ctx.p), np.nan)
    for (a, b, _), v in zip(ctx.tokens.tolist(), values):
        grid[a, b] = v
    return grid


def notebook_pca(W_E: torch.Tensor):
    """The notebook's cell: centre, torch.linalg.svd, scores U*S, ratio of S^2/N."""
    W_E_mean = W_E.mean(dim=0, keepdim=True)
    U, S, Vt = torch.linalg.svd(W_E - W_E_mean, full_matrices=False)
    explained_variance = S.square() / W_E.shape[0]
    return (U * S).numpy(), Vt.numpy(), (explained_variance / explained_variance.sum()).numpy(), S.numpy()


def target(ctx) -> np.ndarray:
    """a+b for integer addition (from the tokens, as the notebook), the label otherwise."""
    if ctx.config.task.task == "add":
        return (ctx.tokens[:, 0] + ctx.tokens[:, 1]).numpy()
    return ctx.labels.numpy()


def col(result: StudyResult, table: str, column: str) -> np.ndarray:
    return np.asarray(result.tables[table].columns[column])



@pytest.fixture(params=["tiny_ctx_add", "tiny_ctx_mod", "tiny_ctx_div"])
def ctx(request):
    return request.getfixturevalue(request.param)


# -- registry -----------------------------------------------------------------------------
def test_each_study_registers_its_name_and_returns_its_tables(tiny_ctx_add):
    for name, (tables, grids, scalars) in CONTRACT.items():
        assert name in STUDY_MODULES
        study = get_study(name)
        assert study.name == name and study.title == STUDY_MODULES[name][1]
        result = run_study(name, tiny_ctx_add)
        assert isinstance(result, StudyResult) and result.study == name
        assert result.epoch == tiny_ctx_add.epoch
        assert set(result.tables) == tables and set(result.grids) == grids, name
        assert scalars <= set(result.scalars), name
        assert all(isinstance(t, Table) and t.name == k for k, t in result.tables.items())
        assert all(isinstance(g, Grid) and g.name == k for k, g in result.grids.items())


# -- embedding ----------------------------------------------------------------------------
def test_embedding_pca_matches_notebook_svd(ctx):
    W_E = ctx.W_E
    mean, components, scores, ratio = embedding_pca(W_E)
    ref_scores, ref_Vt, ref_ratio, ref_S = notebook_pca(W_E)
    assert mean.shape == (W_E.shape[1],) and scores.shape == ref_scores.shape
    np.testing.assert_allclose(mean.numpy(), W_E.mean(dim=0).numpy(), atol=ATOL)
    np.testing.assert_allclose(ratio.numpy(), ref_ratio, atol=ATOL)
    # Components are defined up to sign; the last one spans the null direction of the
    # centred matrix (S ~ 0) when p <= d_model, so it is arbitrary: compare the others.
    k = int((ref_S > 1e-4 * ref_S[0]).sum())
    sign = np.sign((scores.numpy()[:, :k] * ref_scores[:, :k]).sum(axis=0))
    np.testing.assert_allclose(scores.numpy()[:, :k], ref_scores[:, :k] * sign, atol=ATOL)
    np.testing.assert_allclose(components.numpy()[:k], ref_Vt[:k] * sign[:, None], atol=ATOL)
    # the basis reproduces the embeddings
    np.testing.assert_allclose((scores @ components + mean).numpy(), W_E.numpy(), atol=ATOL)


def test_embedding_study_tables(ctx):
    result = run_study("embedding", ctx)
    ref_scores, _, ref_ratio, _ = notebook_pca(ctx.W_E)
    np.testing.assert_allclose(col(result, "pca", "explained_ratio"), ref_ratio, atol=ATOL)
    np.testing.assert_allclose(col(result, "pca", "cumulative_ratio"), np.cumsum(ref_ratio), atol=ATOL)
    assert result.scalars["pc1_ratio"] == pytest.approx(ref_ratio[0], abs=ATOL)
    assert result.scalars["pc2_ratio"] == pytest.approx(ref_ratio[1], abs=ATOL)
    p, k = ref_scores.shape
    assert list(col(result, "pc_scores", "token")) == list(range(p))
    scores = np.stack([col(result, "pc_scores", f"PC{i + 1}") for i in range(k)], axis=1)
    np.testing.assert_allclose(np.abs(scores[:, :2]), np.abs(ref_scores[:, :2]), atol=ATOL)
    np.testing.assert_allclose(result.grids["pc_scores"].values, scores)
    np.testing.assert_allclose(col(result, "pc1_pc2", "pc1"), scores[:, 0])
    np.testing.assert_allclose(col(result, "pc1_pc2", "pc2"), scores[:, 1])
    # uncentred singular values, the notebook's torch.svd
    _, S, _ = torch.svd(ctx.W_E)
    np.testing.assert_allclose(col(result, "singular_values", "W_E"), S.numpy(), atol=ATOL)


def test_embedding_random_control_is_seeded_and_scaled(tiny_ctx_add):
    a = run_study("embedding", tiny_ctx_add)
    b = run_study("embedding", tiny_ctx_add)
    c = run_study("embedding", tiny_ctx_add, seed=1)
    rand = col(a, "singular_values", "random")
    np.testing.assert_array_equal(rand, col(b, "singular_values", "random"))
    assert not np.allclose(rand, col(c, "singular_values", "random"))
    assert np.all(np.diff(rand) <= 0)
    # same Frobenius norm on average: sum S^2 = ||R||_F^2 ~ p * d_model * rms(W_E)^2
    W = tiny_ctx_add.W_E.double()
    assert (rand**2).sum() == pytest.approx(float((W**2).sum()), rel=0.3)


def test_embedding_pca_orientation_is_fixed_by_the_data():
    """A line (PC1) and a parabola (PC2) in the token index: whichever sign the input
    takes, PC1 comes out increasing with the token and PC2 positive at its extremes."""
    p, d = 9, 6
    k = torch.arange(p, dtype=torch.float64) - (p - 1) / 2
    gen = torch.Generator().manual_seed(0)
    u, v = torch.linalg.qr(torch.randn(d, 2, generator=gen, dtype=torch.float64))[0].T
    for su, sv in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        W_E = (su * 3 * k[:, None] * u + sv * (k[:, None] ** 2 - 6.67) * v + 0.5).float()
        _, components, scores, ratio = embedding_pca(W_E)
        assert np.all(np.diff(scores[:, 0].numpy()) > 0)
        assert scores[0, 1] > 0 and scores[-1, 1] > 0
        assert float(ratio[:2].sum()) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(components[0].double().numpy(), su * u.numpy(), atol=1e-5)


def test_embedding_rejects_bad_n_components(tiny_ctx_add):
    with pytest.raises(GrokError, match=r"n_components=99 .*1 to 7"):
        run_study("embedding", tiny_ctx_add, n_components=99)
    result = run_study("embedding", tiny_ctx_add, n_components=2)
    assert result.grids["pc_scores"].values.shape == (7, 2)
    assert result.tables["pc_scores"].column_names == ["token", "PC1", "PC2"]


# -- attention ----------------------------------------------------------------------------
def test_attention_matches_per_sample_patterns(ctx):
    ref = per_sample(ctx)["pattern"]  # [N, head, key]
    result = run_study("attention", ctx)
    n_heads = ctx.config.model.n_heads
    mean = ref.astype(np.float64).mean(axis=0)
    assert list(col(result, "mean_pattern", "head")) == list(range(n_heads))
    for j, name in enumerate(("to_a", "to_b", "to_eq")):
        np.testing.assert_allclose(col(result, "mean_pattern", name), mean[:, j], atol=ATOL)
    np.testing.assert_allclose(result.grids["mean_pattern"].values, mean, atol=ATOL)
    for h in range(n_heads):
        for j, src in ((0, "a"), (1, "b")):
            grid = result.grids[f"head{h}_to_{src}"]
            assert (grid.row_axis, grid.col_axis) == ("a", "b")
            assert grid.row_labels == list(range(ctx.p)) and not grid.centered
            np.testing.assert_allclose(grid.values, reference_grid(ctx, ref[:, h, j]), atol=ATOL)


def test_attention_grids_mark_absent_rows(tiny_ctx_div):
    result = run_study("attention", tiny_ctx_div)
    grid = result.grids["head0_to_a"].values
    assert np.isnan(grid[:, 0]).all() and not np.isnan(grid[:, 1:]).any()
    with pytest.raises(GrokError, match=r"layer=1 .*0 to 0"):
        run_study("attention", tiny_ctx_div, layer=1)


# -- probe --------------------------------------------------------------------------------
def notebook_probe(ctx, X_probe=None, test_size=0.3, random_state=42):
    """The notebook's probe cell on the per-sample activations (or on ``X_probe``)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    # float64, as the study (see grok_engine/studies/probe.py): a float32 solve of these
    # nearly collinear activations moves R^2 with rounding alone
    X_probe = (per_sample(ctx)["post"] if X_probe is None else X_probe).astype(np.float64)
    y_probe = target(ctx)
    X_train, X_test, y_train, y_test = train_test_split(X_probe, y_probe, test_size=test_size,
                                                        random_state=random_state)
    probe_model = LinearRegression().fit(X_train, y_train)
    y_pred = probe_model.predict(X_test)
    # dtype float64: the notebook's full_like(y_test, ...) takes y_test's integer dtype and
    # truncates the mean; the study predicts the true mean (see its module docstring)
    baseline_pred = np.full_like(y_test, y_train.mean(), dtype=np.float64)
    return {"r2": r2_score(y_test, y_pred), "mse": mean_squared_error(y_test, y_pred),
            "baseline_r2": r2_score(y_test, baseline_pred),
            "baseline_mse": mean_squared_error(y_test, baseline_pred),
            "y_test": y_test, "y_pred": y_pred, "X_test": X_test}


def assert_probe_equals(result: StudyResult, ref: dict, atol: float = ATOL) -> None:
    for key in ("r2", "mse", "baseline_r2", "baseline_mse"):
        assert result.scalars[key] == pytest.approx(ref[key], abs=atol, rel=atol), key
    assert list(col(result, "probe", "metric")) == ["r2", "mse"]
    np.testing.assert_allclose(col(result, "probe", "probe"), [ref["r2"], ref["mse"]], atol=atol, rtol=atol)
    np.testing.assert_allclose(col(result, "probe", "baseline"), [ref["baseline_r2"], ref["baseline_mse"]],
                               atol=atol, rtol=atol)
    np.testing.assert_array_equal(col(result, "predictions", "true"), ref["y_test"])
    np.testing.assert_allclose(col(result, "predictions", "predicted"), ref["y_pred"], atol=10 * atol)
    assert result.scalars["n_test"] == len(ref["y_test"])


def test_probe_matches_the_notebook_on_a_well_conditioned_model(tiny_factory):
    """The whole notebook pipeline (per-sample activations, split, LinearRegression).
    d_mlp 16 < train rows keeps the least-squares problem well conditioned (condition
    number ~30), but a batched and a per-sample forward pass still differ by one float32
    ulp (1e-7) in the activations, which the fit amplifies to ~3e-5: hence 1e-4 here; the
    next test checks the fit itself to 1e-5 on identical activations."""
    for task, p in (("add", 7), ("mod_sub", 7)):
        ctx = tiny_factory.context(task, p, d_mlp=16)
        assert_probe_equals(run_study("probe", ctx), notebook_probe(ctx), atol=1e-4)


def test_probe_rows_and_fit_match_the_notebook(ctx):
    """On the d_mlp=64 fixtures the activations are nearly collinear (singular values down to
    1e-4 of the largest, then float32 noise), so the fit amplifies 1e-7 rounding into 1e-4
    of R^2. Check the parts apart: the probe sees the per-sample activations of the rows
    it names, and given those activations its fit equals sklearn's."""
    result = run_study("probe", ctx)
    post = per_sample(ctx)["post"]
    index = {(x, y): i for i, (x, y, _) in enumerate(ctx.tokens.tolist())}
    a, b = col(result, "predictions", "a"), col(result, "predictions", "b")
    ref = notebook_probe(ctx)
    np.testing.assert_allclose(post[[index[(x, y)] for x, y in zip(a, b)]], ref["X_test"], atol=1e-6)
    np.testing.assert_array_equal(col(result, "predictions", "true"), target(ctx)[[index[(x, y)] for x, y in zip(a, b)]])
    # given the study's (float64) activations, its fit is sklearn's
    assert_probe_equals(result, notebook_probe(ctx, X_probe=ctx.neuron_acts_f64.numpy()))
    np.testing.assert_allclose(ctx.neuron_acts_f64.numpy(), ctx.neuron_acts.numpy(), rtol=1e-5, atol=1e-6)
    # and the notebook's own numbers are close, to the conditioning
    assert result.scalars["r2"] == pytest.approx(ref["r2"], rel=1e-2)


def test_probe_options(tiny_ctx_add):
    X = tiny_ctx_add.neuron_acts_f64.numpy()
    ref = notebook_probe(tiny_ctx_add, X_probe=X, test_size=0.5, random_state=3)
    result = run_study("probe", tiny_ctx_add, test_size=0.5, random_state=3)
    assert_probe_equals(result, ref)
    assert result.scalars["n_train"] + result.scalars["n_test"] == 49
    with pytest.raises(GrokError, match=r"test_size=1.5"):
        run_study("probe", tiny_ctx_add, test_size=1.5)


# -- neurons ------------------------------------------------------------------------------
def notebook_correlations(ctx) -> np.ndarray:
    from scipy.stats import pearsonr

    X_probe, y_probe = per_sample(ctx)["post"], target(ctx)
    r = np.zeros(X_probe.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning for dead neurons
        for i in range(X_probe.shape[1]):
            r[i], _ = pearsonr(X_probe[:, i], y_probe)
    return np.nan_to_num(r)


def test_neuron_correlations_match_pearsonr_loop(tiny_ctx_add):
    ctx = tiny_ctx_add
    ref = notebook_correlations(ctx)
    result = run_study("neurons", ctx)
    assert result.scalars["ranked_by"] == "pearson_r" and result.scalars["threshold"] == 0.9
    neuron, r = col(result, "ranking", "neuron"), col(result, "ranking", "r")
    assert sorted(neuron.tolist()) == list(range(ctx.config.model.d_mlp))
    np.testing.assert_allclose(r, ref[neuron], atol=ATOL)
    np.testing.assert_allclose(col(result, "ranking", "abs_r"), np.abs(r))
    assert np.all(np.diff(np.abs(r)) <= 0)
    assert list(col(result, "ranking", "rank")) == list(range(1, len(r) + 1))
    for t in (0.9, 0.3, 0.1):
        res = run_study("neurons", ctx, threshold=t)
        assert res.scalars["n_above"] == int((np.abs(ref) > t).sum())
        assert res.scalars["n_positive_above"] == int((ref > t).sum())


def notebook_neuron_frequencies(ctx) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's best frequency and fraction of variance explained, one neuron at a time
    as the notebook's neuron_freq_norm cell: centre the (a, b) grid of its activations (from
    the per-sample hooks), 2-D transform with the notebook's basis, sum the squares of the
    terms in {Constant, Sin k, Cos k}^2 for each k over the total."""
    p = ctx.p
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.sin(2 * math.pi * k * x / p), torch.cos(2 * math.pi * k * x / p)]
    fb = torch.stack(rows)
    fb = fb / fb.norm(dim=-1, keepdim=True)
    post = per_sample(ctx)["post"].astype(np.float64)
    best, frac = [], []
    for n in range(post.shape[1]):
        grid = torch.from_numpy(reference_grid(ctx, post[:, n]))
        grid = torch.where(torch.isnan(grid), grid.nanmean(), grid)  # mod_div's absent b = 0
        f = fb @ (grid - grid.mean()) @ fb.T
        total = float((f ** 2).sum())
        parts = [sum(float(f[i, j] ** 2) for i in (0, 2 * k - 1, 2 * k) for j in (0, 2 * k - 1, 2 * k))
                 for k in range(1, p // 2 + 1)]
        fracs = [part / total if total > 0 else 0.0 for part in parts]
        best.append(int(np.argmax(fracs)) + 1 if total > 0 else 0)
        frac.append(max(fracs))
    return np.array(best), np.array(frac)


@pytest.mark.parametrize("name", ["tiny_ctx_mod", "tiny_ctx_div"])
def test_modular_neurons_are_ranked_by_their_best_frequencys_fraction(request, name):
    ctx = request.getfixturevalue(name)
    best, frac = notebook_neuron_frequencies(ctx)
    result = run_study("neurons", ctx)
    assert result.scalars["ranked_by"] == "frequency_fraction"
    assert result.tables["ranking"].column_names == ["rank", "neuron", "frequency", "frac_explained"]
    neuron = col(result, "ranking", "neuron")
    assert sorted(neuron.tolist()) == list(range(ctx.config.model.d_mlp))
    np.testing.assert_allclose(col(result, "ranking", "frac_explained"), frac[neuron], atol=ATOL)
    assert list(col(result, "ranking", "frequency")) == list(best[neuron])
    assert np.all(np.diff(col(result, "ranking", "frac_explained")) <= 0)
    top = int(neuron[0])
    assert result.scalars["neuron"] == top and result.scalars["neuron_frequency"] == best[top]
    assert result.scalars["neuron_frac_explained"] == pytest.approx(frac[top], abs=ATOL)
    assert result.scalars["threshold"] == 0.85 and "r" not in result.tables["ranking"].columns
    for t in (0.85, 0.5, 0.2):
        assert run_study("neurons", ctx, threshold=t).scalars["n_above"] == int((frac > t).sum())
    assert ("note" in result.scalars) == (ctx.config.task.task == "mod_div")


def test_dead_neuron_has_zero_correlation(tiny_factory):
    """A neuron that never fires has no correlation (pearsonr's NaN -> 0, as the notebook)."""
    def kill(weights):
        weights["blocks.0.mlp.W_in"][:, 3] = 0.0
        weights["blocks.0.mlp.b_in"][3] = -1.0

    ctx = tiny_factory.context("add", 5, edit=kill)
    assert (ctx.neuron_acts[:, 3] == 0).all()
    result = run_study("neurons", ctx, threshold=0.0)
    r = dict(zip(col(result, "ranking", "neuron").tolist(), col(result, "ranking", "r").tolist()))
    assert r[3] == 0.0
    np.testing.assert_allclose(col(result, "ranking", "r"), notebook_correlations(ctx)[col(result, "ranking", "neuron")],
                               atol=ATOL)
    assert result.scalars["n_above"] == sum(v != 0 for v in r.values())


def notebook_pc_fit(ctx, neuron: int, our_scores: np.ndarray):
    """The notebook's fit of a neuron's pre-activation on PC1/PC2 of a and b, on the rows
    a+b < N for addition. Scores from the notebook's SVD, signs matched to ours; float64
    so the comparison tests the method, not float32 rounding."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    pca_scores, *_ = notebook_pca(ctx.W_E)
    sign = np.sign((pca_scores[:, :2] * our_scores[:, :2]).sum(axis=0))
    pca_scores = pca_scores[:, :2].astype(np.float64) * sign
    heatmap = reference_grid(ctx, per_sample(ctx)["pre"][:, neuron])
    features, targets = [], []
    for a in range(ctx.p):
        for b in range(ctx.p):
            if ctx.config.task.task == "add" and not a + b < ctx.p:
                continue
            if not np.isnan(heatmap[a, b]):
                features.append([pca_scores[a, 0], pca_scores[a, 1], pca_scores[b, 0], pca_scores[b, 1]])
                targets.append(heatmap[a, b])
    X, y = np.array(features), np.array(targets)
    model = LinearRegression().fit(X, y)
    return model.intercept_, model.coef_, r2_score(y, model.predict(X)), len(y)


def test_neuron_grids_and_pc_fit_match_notebook(ctx):
    result = run_study("neurons", ctx)
    ranking = col(result, "ranking", "neuron")
    for neuron in (int(ranking[0]), int(ranking[-1]), 5):
        res = result if neuron == ranking[0] else run_study("neurons", ctx, neuron=neuron)
        assert res.scalars["neuron"] == neuron
        ref = per_sample(ctx)
        pre, post = res.grids["pre"], res.grids["post"]
        assert pre.centered and not post.centered and (pre.row_axis, pre.col_axis) == ("a", "b")
        np.testing.assert_allclose(pre.values, reference_grid(ctx, ref["pre"][:, neuron]), atol=ATOL)
        np.testing.assert_allclose(post.values, reference_grid(ctx, ref["post"][:, neuron]), atol=ATOL)
        scores = embedding_pca(ctx.W_E, torch.float64)[2].numpy()
        intercept, coef, r2, n_rows = notebook_pc_fit(ctx, neuron, scores)
        assert list(col(res, "pc_fit", "feature")) == ["intercept", "PC1(a)", "PC2(a)", "PC1(b)", "PC2(b)"]
        np.testing.assert_allclose(col(res, "pc_fit", "coefficient"), [intercept, *coef], atol=ATOL)
        assert res.scalars["fit_r2"] == pytest.approx(r2, abs=ATOL)
        expected_rows = {"add": ctx.p * (ctx.p + 1) // 2}.get(ctx.config.task.task, len(ctx.labels))
        assert n_rows == expected_rows


def test_neuron_option_is_checked(tiny_ctx_add):
    for bad in (64, -1, 2.5, True):
        with pytest.raises(GrokError, match=rf"neuron={bad!r} is out of range: allowed 0 to 63"):
            run_study("neurons", tiny_ctx_add, neuron=bad)
    with pytest.raises(GrokError, match=r"threshold=2"):
        run_study("neurons", tiny_ctx_add, threshold=2)
