"""The attention part of the backward that reads d(resid_mid) row by row, as one compiled
loop over a member's train rows (numba; see :mod:`grok_engine.table_mix` for why compiled
code and why its numbers do not depend on the CPU): d(scores) and d(VO), the two sums the
rest of :func:`grok_engine.one_layer_backward.backward_attention` starts from.

resid_mid[a, b] = x_eq + sum_h P[a,b,0,h] VO[h,a] + P[a,b,1,h] VO[h,p+b] + P[a,b,2,h] VO[h,2p],
P the softmax over the three positions of the '=' query's scores. Per train row (a, b)
with gradient g = d(loss)/d(resid_mid[a, b]) [d_model]:

* dP[j, h] = g . VO[h, row j] (rows a, p+b and 2p);
* the softmax's backward, dS[j, h] = P[j, h] (dP[j, h] - sum_k P[k, h] dP[k, h]), summed
  into d(scores) [T, H] at table row j;
* d(VO)[h, row j] += P[j, h] g, and sum_rows g (x_eq's share).

This replaces numpy's grid-shaped form (every pair's d(resid_mid), 0 off the train rows,
through batched matmuls grouped by a and by b): it reads only the train rows and makes
each dot product in registers, where the batched matmuls ran ~20 small BLAS calls per
member and wrote [p, p, H] intermediates.

Shapes: ``canon`` [n] int64 places a * p + b; ``dresid`` [n, d_model]; ``P`` [p, p, 3, H];
``VO_T`` [d_model, T, H] (the VO table with the heads last, so a row's H values of one
unit are adjacent); outputs ``dVO`` [H, T, d_model], ``dSt`` [T, H], ``dsum`` [d_model],
overwritten. T = 2p + 1. All float32, C-contiguous.
"""

from __future__ import annotations

import numba
import numpy as np


def attention_rows(canon: np.ndarray, dresid: np.ndarray, P: np.ndarray, VO_T: np.ndarray,
                   dVO: np.ndarray, dSt: np.ndarray, dsum: np.ndarray) -> None:
    """d(scores) into ``dSt``, d(VO) into ``dVO`` and sum_rows dresid into ``dsum`` for one
    member's train rows (module docstring). Four heads (the notebook's) take a loop with
    each dot product's running sum in a register; other head counts a general loop that
    adds in the same order (the same bits)."""
    if P.shape[3] == 4:
        _rows4(canon, dresid, P, VO_T, dVO, dSt, dsum)
    else:
        _rows_any(canon, dresid, P, VO_T, dVO, dSt, dsum)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _axpy(w, x, y):  # noqa: ANN001 - y += w * x, one vector loop (one input, one output)
    for k in range(x.shape[0]):
        y[k] += w * x[k]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _values(a, b, p, g, P, dVO, dsum):  # noqa: ANN001 - one row's d(VO) and sum, any H
    # one axpy per table row: a loop that updates three rows at once is not vectorized
    # (measured 263 against 94 us for 159 rows at p=23)
    for h in range(P.shape[3]):
        _axpy(P[a, b, 0, h], g, dVO[h, a])
        _axpy(P[a, b, 1, h], g, dVO[h, p + b])
        _axpy(P[a, b, 2, h], g, dVO[h, 2 * p])
    _axpy(np.float32(1), g, dsum)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scores(a, b, p, h, d0, d1, d2, P, dSt):  # noqa: ANN001 - one row and head's softmax backward
    P0, P1, P2 = P[a, b, 0, h], P[a, b, 1, h], P[a, b, 2, h]
    s = P0 * d0 + P1 * d1
    s += P2 * d2
    dSt[a, h] += P0 * (d0 - s)
    dSt[p + b, h] += P1 * (d1 - s)
    dSt[2 * p, h] += P2 * (d2 - s)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _step4(gk, r, s0, s1, s2, s3):  # noqa: ANN001 - four running sums, one term each
    return s0 + gk * r[0], s1 + gk * r[1], s2 + gk * r[2], s3 + gk * r[3]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _rows4(canon, dresid, P, VO_T, dVO, dSt, dsum):  # noqa: ANN001 - attention_rows' types
    p, D = P.shape[0], dresid.shape[1]
    zero = np.float32(0)
    dVO[:] = 0
    dSt[:] = 0
    dsum[:] = 0
    for i in range(canon.shape[0]):
        a = canon[i] // p
        b = canon[i] - a * p
        g = dresid[i]
        x0 = x1 = x2 = x3 = zero  # g . VO[h, a]
        y0 = y1 = y2 = y3 = zero  # g . VO[h, p + b]
        z0 = z1 = z2 = z3 = zero  # g . VO[h, 2p]
        for k in range(D):
            gk = g[k]
            ra, rb, re = VO_T[k, a], VO_T[k, p + b], VO_T[k, 2 * p]
            x0, x1, x2, x3 = _step4(gk, ra, x0, x1, x2, x3)
            y0, y1, y2, y3 = _step4(gk, rb, y0, y1, y2, y3)
            z0, z1, z2, z3 = _step4(gk, re, z0, z1, z2, z3)
        _scores(a, b, p, 0, x0, y0, z0, P, dSt)
        _scores(a, b, p, 1, x1, y1, z1, P, dSt)
        _scores(a, b, p, 2, x2, y2, z2, P, dSt)
        _scores(a, b, p, 3, x3, y3, z3, P, dSt)
        _values(a, b, p, g, P, dVO, dsum)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _rows_any(canon, dresid, P, VO_T, dVO, dSt, dsum):  # noqa: ANN001
    p, H, D = P.shape[0], P.shape[3], dresid.shape[1]
    dVO[:] = 0
    dSt[:] = 0
    dsum[:] = 0
    dots = np.zeros((3, H), np.float32)
    for i in range(canon.shape[0]):
        a = canon[i] // p
        b = canon[i] - a * p
        g = dresid[i]
        dots[:] = 0
        for k in range(D):
            gk = g[k]
            for h in range(H):
                dots[0, h] += gk * VO_T[k, a, h]
                dots[1, h] += gk * VO_T[k, p + b, h]
                dots[2, h] += gk * VO_T[k, 2 * p, h]
        for h in range(H):
            _scores(a, b, p, h, dots[0, h], dots[1, h], dots[2, h], P, dSt)
        _values(a, b, p, g, P, dVO, dsum)
