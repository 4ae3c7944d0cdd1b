"""Which neurons matter and how one neuron responds (notebook: the pearsonr loop, the
neuron heatmaps and the fit of a neuron's pre-activation on the embedding's principal
components; Nanda et al. 2023 for the modular tasks).

How the neurons are ranked depends on the task:

- **integer addition** (``add``): the notebook correlates every MLP neuron's post-ReLU
  activation at '=' with a+b (one ``pearsonr`` call per neuron; NaN -> 0 for dead neurons)
  and finds most of them above 0.9 ("the sum is represented in a highly distributed
  manner"). Ranked by |r|; ``threshold`` (default 0.9) counts |r| above it.
- **modular tasks** (every other): the answer is periodic in a and b, so a correlation with
  it means nothing. A grokked model's neurons each respond to one frequency k of the
  inputs (Nanda et al.). Take neuron n's activation at '=' over the (a, b) grid, subtract
  its mean and write it in the 2-D Fourier basis (:mod:`grok_engine.fourier_basis`:
  ``F @ acts @ F.T``, F the normalised basis Constant, Sin 1, Cos 1, ..). Frequency k owns
  the terms whose row and column are both in {Constant, Sin k, Cos k}: the constant times
  cos/sin(w_k a) or cos/sin(w_k b) and their products cos/sin(w_k a) cos/sin(w_k b), with
  w_k = 2 pi k / p. The neuron's **fraction explained** by k is the sum of squares of those
  terms over the sum of squares of all terms (its variance over the grid: the notebook's
  ``neuron_freq_norm``); its **frequency** is the k of largest fraction. Ranked by that
  fraction; ``threshold`` (default 0.85, the notebook's cluster cut) counts the neurons
  above it. A neuron that never changes has fraction 0 and frequency 0. One batched
  transform for all neurons (:func:`grok_engine.studies.fourier.neuron_spectrum`).

Either way a neuron (default the top-ranked one) is drawn pre- and post-ReLU over (a, b)
and its pre-activation fitted linearly on PC1 and PC2 of the embeddings of a and of b
(the notebook's fit: R^2 near 1, symmetric coefficients, for addition).
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


RANKED_BY = {"add": "pearson_r"}  # every other task: "frequency_fraction"
DEFAULT_THRESHOLD = {"pearson_r": 0.9, "frequency_fraction": 0.85}


def ranked_by(ctx) -> str:
    """How the neurons of ``ctx``'s task are ranked: "pearson_r" or "frequency_fraction"."""
    return RANKED_BY.get(ctx.config.task.task, "frequency_fraction")


def neuron_frequencies(ctx) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's best frequency and the fraction of its variance over (a, b) that it
    explains (module docstring): ([d_mlp] int64, 0 for a neuron that never changes;
    [d_mlp] float64)."""
    from grok_engine.studies.fourier import neuron_spectrum

    _, _, total, freq_norm = neuron_spectrum(ctx)
    frac, best = freq_norm.max(dim=0)
    return torch.where(total > 0, best + 1, 0).numpy(), frac.numpy()


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


def _ranking(ctx, by: str) -> tuple[dict[str, np.ndarray], np.ndarray, str, str]:
    """(columns of table "ranking" without rank/neuron, unsorted; the score sorted on;
    title; description)."""
    if by == "pearson_r":
        r = neuron_correlations(ctx)
        return ({"r": r, "abs_r": np.abs(r)}, np.abs(r), "Neurons by |Pearson r| with the target",
                "Correlation of each MLP neuron's post-ReLU activation at '=' with the target "
                "over all inputs (0 for a neuron that never changes).")
    freq, frac = neuron_frequencies(ctx)
    return ({"frequency": freq, "frac_explained": frac}, frac,
            "Neurons by the fraction of their variance one frequency explains",
            "frac_explained: share of the neuron's variance over (a, b) (at '=', post-ReLU) in "
            "the 2-D Fourier terms of its best frequency (constant x cos/sin(w a), cos/sin(w b) "
            "and their products); frequency 0: a neuron that never changes.")


@register("neurons")
def neurons(ctx, threshold: float | None = None, neuron: int | None = None) -> StudyResult:
    """Table "ranking" (rank, neuron, then r, abs_r for ``add`` or frequency,
    frac_explained for the modular tasks), best first (module docstring); grids "pre"
    (centred) and "post" [a, b] of one neuron's activation at '='; table "pc_fit"
    (feature, coefficient; intercept first) of that neuron's pre-activation on the PC
    scores of a and b. Options: ``threshold`` for the count n_above (default 0.9 for |r|,
    0.85 for the fraction), ``neuron`` (default the top-ranked one). Scalars ranked_by
    ("pearson_r" or "frequency_fraction"), threshold, n_above, neuron, fit_r2; for ``add``
    n_positive_above (r > threshold) and neuron_r; for the modular tasks neuron_frequency
    and neuron_frac_explained (and a note for tasks other than mod_add/mod_sub)."""
    d_mlp = ctx.config.model.d_mlp
    by = ranked_by(ctx)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD[by]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise GrokError(f"threshold={threshold!r} is out of range: allowed [0, 1]")
    if neuron is not None and (isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer))
                               or not 0 <= neuron < d_mlp):
        raise GrokError(f"neuron={neuron!r} is out of range: allowed 0 to {d_mlp - 1}")
    columns, score, title, description = _ranking(ctx, by)
    # stable sort on -score: ties keep neuron order, so the ranking is reproducible
    order = np.argsort(-score, kind="stable")
    neuron = int(order[0]) if neuron is None else int(neuron)

    result = StudyResult("neurons", ctx.epoch)
    result.add(Table("ranking", {"rank": np.arange(1, d_mlp + 1), "neuron": order,
                                 **{name: values[order] for name, values in columns.items()}},
                     title=title, description=description))
    labels = list(range(ctx.p))
    shown = {"neuron": neuron}  # the items below are this neuron's (export names carry it)
    pre = ctx.to_grid(ctx.neuron_pre_acts[:, neuron])
    post = ctx.to_grid(ctx.neuron_acts[:, neuron])
    result.add(Grid("pre", pre, "a", "b", labels, labels, centered=True, options=shown,
                    title=f"Neuron {neuron} before the activation function, at '='"))
    result.add(Grid("post", post, "a", "b", labels, labels, centered=False, options=shown,
                    title=f"Neuron {neuron} after the activation function, at '='"))
    names, coef, intercept, fit_r2 = pc_fit(ctx, neuron)
    n_rows = len(pc_fit_rows(ctx))
    result.add(Table("pc_fit", {
        "feature": ["intercept", *names], "coefficient": np.array([intercept, *coef]),
    }, title=f"Neuron {neuron}'s pre-activation fitted on the PC scores of a and b",
        description=f"Least squares on {n_rows} rows"
                    + (" (a + b < p, as the notebook)" if ctx.config.task.task == "add" else "")
                    + "; the scalar fit_r2 is its R^2 on the same rows.", options=shown,
        noise_floor=(("coefficient",),)))
    result.scalars.update({"ranked_by": by, "threshold": float(threshold),
                           "n_above": int((score > threshold).sum())})
    if by == "pearson_r":
        r = columns["r"]
        result.scalars.update({"n_positive_above": int((r > threshold).sum()), "neuron": neuron,
                               "neuron_r": float(r[neuron])})
    else:
        result.scalars.update({"neuron": neuron, "neuron_frequency": int(columns["frequency"][neuron]),
                               "neuron_frac_explained": float(columns["frac_explained"][neuron])})
        if ctx.config.task.task not in ("mod_add", "mod_sub"):
            result.scalars["note"] = (f"the frequencies are those of a and b, the addition "
                                      f"algorithm's; for {ctx.config.task.task} they need not fit")
    result.scalars["fit_r2"] = fit_r2
    return result
