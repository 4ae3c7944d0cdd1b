"""Embedding PCA and SVD (notebook: "Analysing the Model" and "Singular Value Decomposition").

The notebook centres ``W_E`` (without the '=' row), takes ``torch.linalg.svd`` of it and
reads the components as a PCA: explained variance ratio ``S^2 / sum S^2``, scores
``U * S``. On its p=10 addition run PC1 (a line in the token index) holds 73% of the
variance and PC2 (a parabola) 26%. It then compares the singular values of the
uncentred ``W_E`` (``torch.svd``) with those of a random Gaussian matrix of the same shape.

:func:`embedding_pca` is the reusable basis (the PC-ablation and the neuron fit use it).
"""

from __future__ import annotations

import numpy as np
import torch

from grok_engine.errors import GrokError
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register


def embedding_pca(W_E: torch.Tensor, dtype: torch.dtype | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of the token embeddings, the notebook's centred SVD.

    W_E [p, d_model] (no '=' row) -> mean [d_model], components [k, d_model] (orthonormal
    rows, PC1 first), scores [p, k] (``(W_E - mean) @ components.T``, = ``U * S``),
    explained_ratio [k] (``S^2 / sum S^2``), with k = min(p, d_model). All in ``dtype``
    (default W_E's dtype), on the CPU.

    Computed in float64 so the ratios do not depend on float32 rounding. A component's sign
    is arbitrary in an SVD (LAPACK libraries disagree, and it can flip between checkpoints);
    we fix it from the data: a component whose scores correlate with the token index
    (|r| >= 0.1) is oriented to increase with the token (the notebook's PC1 "line"; its own
    SVD happened to give the opposite sign), any other one (the PC2 "parabola", symmetric in
    the token) so that its largest-magnitude score is positive.
    """
    W = W_E.detach().to("cpu", torch.float64)
    mean = W.mean(dim=0)
    U, S, Vt = torch.linalg.svd(W - mean, full_matrices=False)
    scores = U * S
    sign = _orientation(scores)
    scores, Vt = scores * sign, Vt * sign[:, None]
    total = (S * S).sum()
    ratio = (S * S) / total if total > 0 else torch.zeros_like(S)
    dtype = dtype or W_E.dtype
    return mean.to(dtype), Vt.to(dtype), scores.to(dtype), ratio.to(dtype)


def _orientation(scores: torch.Tensor) -> torch.Tensor:
    """+-1 per component (see :func:`embedding_pca`). scores [p, k] float64 -> [k]."""
    token = torch.arange(scores.shape[0], dtype=torch.float64)
    token = token - token.mean()
    norms = scores.norm(dim=0)
    corr = (token @ scores) / (token.norm() * norms).clamp_min(1e-300)
    extreme = scores.gather(0, scores.abs().argmax(dim=0, keepdim=True))[0]
    by_index = torch.where(corr < 0, -1.0, 1.0)
    by_extreme = torch.where(extreme < 0, -1.0, 1.0)
    return torch.where(corr.abs() >= 0.1, by_index, by_extreme).to(torch.float64)


def singular_values(W: torch.Tensor) -> np.ndarray:
    """Singular values of the uncentred matrix, descending (the notebook's ``torch.svd``)."""
    return torch.linalg.svdvals(W.detach().to("cpu", torch.float64)).numpy()


def random_control(W: torch.Tensor, seed: int) -> torch.Tensor:
    """A Gaussian matrix of W's shape from a fixed seed, scaled to W's root-mean-square entry.

    The notebook uses ``torch.randn_like(W_E)`` (std 1); scaling to W's RMS changes only
    the scale, so both spectra share one axis and their shapes can be compared.
    """
    gen = torch.Generator().manual_seed(seed)
    R = torch.randn(tuple(W.shape), generator=gen, dtype=torch.float64)
    rms = W.detach().to("cpu", torch.float64).square().mean().sqrt()
    return R * rms


@register("embedding")
def embedding(ctx, n_components: int | None = None, seed: int = 0) -> StudyResult:
    """Tables "pca" (component, singular_value, explained_ratio, cumulative_ratio),
    "pc_scores" (token, PC1..PCn), "pc1_pc2" (token, pc1, pc2), "singular_values"
    (index, W_E, random); grid "pc_scores" [token, component]. Options: ``n_components``
    (columns of the score table and grid; default all k = min(p, d_model)), ``seed`` of the
    random control. Scalars pc1_ratio, pc2_ratio."""
    W_E = ctx.W_E
    mean, components, scores, ratio = embedding_pca(W_E, torch.float64)
    k = components.shape[0]
    if n_components is None:
        n_components = k
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= k:
        raise GrokError(f"n_components={n_components!r} is out of range: allowed 1 to {k}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GrokError(f"seed={seed!r} is not allowed: an integer >= 0")

    S_centred = scores.norm(dim=0).numpy()  # scores = U * S with orthonormal U
    ratio_np = ratio.numpy()
    scores_np = scores.numpy()
    tokens = np.arange(W_E.shape[0])
    names = [f"PC{i + 1}" for i in range(n_components)]

    result = StudyResult("embedding", ctx.epoch)
    result.add(Table("pca", {
        "component": np.arange(1, k + 1),
        "singular_value": S_centred,
        "explained_ratio": ratio_np,
        "cumulative_ratio": np.cumsum(ratio_np),
    }, title="PCA of W_E (centred SVD)",
        description="Explained variance ratio S^2 / sum S^2 of each principal component of the "
                    "token embeddings, and the running total.",
        noise_floor=(("singular_value",), ("explained_ratio",))))
    result.add(Table("pc_scores", {"token": tokens, **{n: scores_np[:, i] for i, n in enumerate(names)}},
                     title="PC scores per token",
                     description="Each token's embedding minus the mean, projected on each component.",
                     noise_floor=(tuple(names),)))
    result.add(Grid("pc_scores", scores_np[:, :n_components], "token", "component",
                    tokens.tolist(), names, title="PC scores per token", centered=True))
    pc2 = scores_np[:, 1] if k > 1 else np.zeros(len(tokens))
    result.add(Table("pc1_pc2", {"token": tokens, "pc1": scores_np[:, 0], "pc2": pc2},
                     title="Tokens on PC1 and PC2",
                     description="The notebook's scatter: a line along PC1, a parabola along PC2.",
                     noise_floor=(("pc1", "pc2"),)))
    S_W = singular_values(W_E)
    S_R = singular_values(random_control(W_E, seed))
    result.add(Table("singular_values", {"index": np.arange(1, len(S_W) + 1), "W_E": S_W, "random": S_R},
                     title="Singular values of W_E and of a random control",
                     description=f"Uncentred SVD of W_E beside a Gaussian matrix of the same shape "
                                 f"and RMS (seed {seed}); a few large values = low-rank structure.",
                     noise_floor=(("W_E",), ("random",))))
    result.scalars.update({
        "pc1_ratio": float(ratio_np[0]),
        "pc2_ratio": float(ratio_np[1]) if k > 1 else float("nan"),
        "n_components": k,
    })
    return result
