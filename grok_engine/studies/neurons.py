"""Neuron correlations with the target (notebook: the pearsonr loop, the neuron heatmaps
and the fit of a neuron's pre-activation on the embedding's principal components).

The notebook correlates every MLP neuron's post-ReLU activation at '=' with a+b (one
``pearsonr`` call per neuron; NaN -> 0 for dead neurons), finds most of them above 0.9
("the sum is represented in a highly distributed manner"), draws a top neuron's pre- and
post-ReLU activation over (a, b), and fits its pre-activation linearly on PC1 and PC2 of
the embeddings of a and of b (R^2 near 1, symmetric coefficients).
"""

from __future__ import annotations

import numpy as np
import torch

from grok_engine.errors import GrokError
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register
from grok_engine.studies._linalg import as_f64, least_squares, pearson_columns, r2_score
from grok_engine.studies.embedding import embedding_pca
from grok_engine.studies.probe import probe_target


def neuron_correlations(ctx) -> np.ndarray:
    """Pearson r of each neuron's post-activation at '=' with the target: [d_mlp] float64."""
    return pearson_columns(ctx.neuron_acts, probe_target(ctx))


def pc_fit_rows(ctx) -> np.ndarray:
    """Rows used to fit a neuron on the PC scores: for integer addition only the pairs with
    a + b < p, as the notebook (its ``if a + b < N`` comes from a sum that must stay a
    token); for every other task all rows."""
    rows = np.arange(len(ctx.labels))
    if ctx.config.task.task == "add":
        tokens = ctx.tokens.detach().cpu().numpy()
        rows = rows[tokens[:, 0] + tokens[:, 1] < ctx.p]
    return rows


def pc_fit(ctx, neuron: int) -> tuple[list[str], np.ndarray, float, float]:
    """Fit neuron's pre-activation at '=' as c0 + c1 PC1(a) + c2 PC2(a) + c3 PC1(b) + c4 PC2(b)
    on :func:`pc_fit_rows`. Returns (feature names, coefficients [n_features], intercept, R^2
    on the same rows)."""
    scores = embedding_pca(ctx.W_E, torch.float64)[2].numpy()  # [p, k]
    n_pc = min(2, scores.shape[1])
    rows = pc_fit_rows(ctx)
    tokens = ctx.tokens.detach().cpu().numpy()[rows]
    X = np.concatenate([scores[tokens[:, 0], :n_pc], scores[tokens[:, 1], :n_pc]], axis=1)
    names = [f"PC{i + 1}({v})" for v in ("a", "b") for i in range(n_pc)]
    y = as_f64(ctx.neuron_pre_acts[rows, neuron])
    coef, intercept = least_squares(X, y)
    return names, coef, intercept, r2_score(y, X @ coef + intercept)


@register("neurons")
def neurons(ctx, threshold: float = 0.9, neuron: int | None = None) -> StudyResult:
    """Table "ranking" (rank, neuron, r, abs_r) sorted by |r| descending; grids "pre"
    (centred) and "post" [a, b] of one neuron's activation at '='; table "pc_fit"
    (feature, coefficient; intercept first) of that neuron's pre-activation on the PC
    scores of a and b. Options: ``threshold`` for the counts (default 0.9), ``neuron``
    (default the top-ranked one). Scalars n_above (|r| > threshold), n_positive_above
    (r > threshold), neuron, neuron_r, fit_r2."""
    d_mlp = ctx.config.model.d_mlp
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise GrokError(f"threshold={threshold!r} is out of range: allowed [0, 1]")
    r = neuron_correlations(ctx)
    # stable sort on -|r|: ties keep neuron order, so the ranking is reproducible
    order = np.argsort(-np.abs(r), kind="stable")
    if neuron is None:
        neuron = int(order[0])
    if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < d_mlp:
        raise GrokError(f"neuron={neuron!r} is out of range: allowed 0 to {d_mlp - 1}")
    neuron = int(neuron)

    result = StudyResult("neurons", ctx.epoch)
    result.add(Table("ranking", {
        "rank": np.arange(1, d_mlp + 1), "neuron": order, "r": r[order], "abs_r": np.abs(r[order]),
    }, title="Neurons by |Pearson r| with the target",
        description="Correlation of each MLP neuron's post-ReLU activation at '=' with the target "
                    "over all inputs (0 for a neuron that never changes)."))
    labels = list(range(ctx.p))
    pre = ctx.to_grid(ctx.neuron_pre_acts[:, neuron])
    post = ctx.to_grid(ctx.neuron_acts[:, neuron])
    result.add(Grid("pre", pre, "a", "b", labels, labels,
                    title=f"Neuron {neuron} before the activation function, at '='", centered=True))
    result.add(Grid("post", post, "a", "b", labels, labels,
                    title=f"Neuron {neuron} after the activation function, at '='", centered=False))
    names, coef, intercept, fit_r2 = pc_fit(ctx, neuron)
    n_rows = len(pc_fit_rows(ctx))
    result.add(Table("pc_fit", {
        "feature": ["intercept", *names], "coefficient": np.array([intercept, *coef]),
    }, title=f"Neuron {neuron}'s pre-activation fitted on the PC scores of a and b",
        description=f"Least squares on {n_rows} rows"
                    + (" (a + b < p, as the notebook)" if ctx.config.task.task == "add" else "")
                    + "; the scalar fit_r2 is its R^2 on the same rows.",
        noise_floor=(("coefficient",),)))
    result.scalars.update({
        "threshold": float(threshold),
        "n_above": int((np.abs(r) > threshold).sum()),
        "n_positive_above": int((r > threshold).sum()),
        "neuron": neuron, "neuron_r": float(r[neuron]), "fit_r2": fit_r2,
    })
    return result
