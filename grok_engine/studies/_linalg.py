"""Small batched linear-algebra helpers shared by the studies (numpy, float64).

Each replaces a per-column or per-sample loop of the notebook with one matrix operation:
``pearson_columns`` is the notebook's ``for i in range(d_mlp): pearsonr(X[:, i], y)``;
``least_squares`` is ``sklearn.linear_model.LinearRegression().fit`` (intercept, minimum-norm
coefficients when the system is under-determined, the same SVD solve and singular-value
cutoff); ``r2_score`` and ``mse`` are sklearn's.
"""

from __future__ import annotations

import numpy as np
import torch


def as_f64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def pearson_columns(X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> np.ndarray:
    """Pearson r of every column of ``X`` [N, k] with ``y`` [N] -> [k] float64.

    A constant column (a dead ReLU neuron) or a constant ``y`` has no correlation: scipy's
    ``pearsonr`` returns NaN there and the notebook's ``np.nan_to_num`` makes it 0; so do we.
    Constancy is tested on the raw values (max == min), not on the float64 variance, which
    rounding can leave a hair above zero.

    >>> pearson_columns(np.array([[0., 1.], [1., 1.], [2., 1.]]), np.array([1., 2., 3.]))
    array([1., 0.])
    """
    X, y = as_f64(X), as_f64(y)  # float32 -> float64 is exact: max == min is unchanged
    n = len(y)
    yc = y - y.mean()
    # No centred copy of X (52 MB at p=113): yc sums to zero, so Xc.T @ yc = X.T @ yc, and
    # each column's sum of squares about its mean is sum(x^2) - n mean^2 (float64 keeps
    # the cancellation far below the float32 activations' own rounding).
    num = X.T @ yc
    mean = X.sum(axis=0) / n
    ss = np.maximum(np.einsum("ij,ij->j", X, X) - n * mean * mean, 0.0)
    den = np.sqrt(ss * (yc @ yc))
    constant = (np.ptp(X, axis=0) == 0) | (np.ptp(y) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(constant, 0.0, num / np.where(den == 0, 1.0, den))
    return np.clip(r, -1.0, 1.0)


def least_squares(X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                  rcond: float = 1e-6) -> tuple[np.ndarray, float]:
    """Ordinary least squares with an intercept: ``y ~ X @ coef + intercept``, in float64.

    X [N, k], y [N] -> (coef [k], intercept). What sklearn's ``LinearRegression`` (1.9) does
    on dense input: X and y are centred, the coefficients are ``scipy.linalg.lstsq``'s
    minimum-norm solution (LAPACK ``gelsd``: an SVD) ignoring singular values below
    ``rcond`` times the largest (sklearn's ``tol=1e-6``), and the intercept restores the
    means. ``np.linalg.lstsq`` calls the same ``gelsd`` with the same relative cutoff.

    Why an SVD and not the k x k Gram matrix: MLP activations are nearly collinear (condition
    number ~3e7 on the notebook's p=10 run), and ``Xc.T @ Xc`` squares that to ~1e15, at
    float64's own rounding, so its solution depended on the BLAS kernel's summation order
    (R^2 0.07244 on one CPU, 0.07248 on another). The SVD works at the matrix's own
    condition, so the result is a property of the activations. The cutoff matters too: the
    activations are float32, and directions weaker than ~1e-6 of the strongest are their
    rounding noise.
    """
    X, y = as_f64(X), as_f64(y)
    X_mean, y_mean = X.mean(axis=0), y.mean()
    coef, _res, _rank, _sv = np.linalg.lstsq(X - X_mean, y - y_mean, rcond=rcond)
    return coef, float(y_mean - X_mean @ coef)


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = as_f64(y_true), as_f64(y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, as sklearn's: 1 - SS_res / SS_tot; for a constant
    ``y_true`` 1.0 if the prediction is perfect, else 0.0 (sklearn's ``force_finite``)."""
    y_true, y_pred = as_f64(y_true), as_f64(y_pred)
    ss_res = float(((y_true - y_pred) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot
