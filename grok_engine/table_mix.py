"""The attention-weighted sum of table rows over the grid of pairs, as one compiled loop:
the inner op of :func:`grok_engine.one_layer.grid_forward` (resid_mid, and the MLP's
pre-activation with its ReLU).

Why compiled (numba): per pair and unit the sum is 2H + 1 multiply-adds, too few for BLAS.
As numpy's batched matmuls (one per a, one per b, K = H + 1 and H) and a transposed add,
BLAS zero-fills and then adds into each output block, and the b-part goes through a
[p, p, E] temporary: each output was written three times and read twice, 13% of a pack's
epoch at p=23 (AMD EPYC, py-spy). Here each output is summed in a register and written
once, the ReLU with it: 187 against 558 us for the pre-activation of one member at p=23
(AMD EPYC Zen 1, one thread, in a loop of 300).

Same numbers on any CPU: the loop adds in one fixed order, c, then the a terms by head,
then the b terms by head, each a float32 product rounded and added (numba compiles
without fastmath, so LLVM neither reassociates the sums nor contracts a product and its
sum into an FMA whatever the CPU's vector width); no reduction runs across the vector.

Imported on first use (numba's import and the cached kernel's load are ~0.3 s): the
TUI's first paint never loads it.
"""

from __future__ import annotations

import numba
import numpy as np


def mix(P: np.ndarray, A: np.ndarray, B: np.ndarray, c: np.ndarray, relu: bool, out: np.ndarray) -> np.ndarray:
    """out[a, b] = c + sum_h P[a, b, 0, h] A[h, a] + sum_h P[a, b, 1, h] B[h, b], then
    max(., 0) when ``relu`` (a NaN stays NaN, as with np.maximum), for one member; returns
    ``out``.

    P [p, p, 3, H] the attention from '=' to (a, b, '='), A [H, >= p, E] and B [H, p, E]
    the a and b table rows (less the '=' row, see ``one_layer.grid_forward``), c [E], out
    [p, p, E]; all C-contiguous float32. Four heads (the notebook's) take a loop that
    keeps the running sum in a register; any other count adds head by head through
    ``out``, in the same order (so the same bits)."""
    if P.shape[3] == 4:
        _mix4(P, A, B, c, relu, out)
    else:
        _mix_any(P, A, B, c, relu, out)
    return out


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _mix4(P, A, B, c, relu, out):  # noqa: ANN001 - numba's types are the docstring's of mix
    p, E = P.shape[0], c.shape[0]
    zero = np.float32(0)
    for a in range(p):
        A0, A1, A2, A3 = A[0, a], A[1, a], A[2, a], A[3, a]
        for b in range(p):
            o = out[a, b]
            B0, B1, B2, B3 = B[0, b], B[1, b], B[2, b], B[3, b]
            w0, w1, w2, w3 = P[a, b, 0, 0], P[a, b, 0, 1], P[a, b, 0, 2], P[a, b, 0, 3]
            v0, v1, v2, v3 = P[a, b, 1, 0], P[a, b, 1, 1], P[a, b, 1, 2], P[a, b, 1, 3]
            for e in range(E):
                s = c[e] + w0 * A0[e]
                s += w1 * A1[e]
                s += w2 * A2[e]
                s += w3 * A3[e]
                s += v0 * B0[e]
                s += v1 * B1[e]
                s += v2 * B2[e]
                s += v3 * B3[e]
                if relu and s < zero:
                    s = zero
                o[e] = s


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _mix_any(P, A, B, c, relu, out):  # noqa: ANN001
    p, H, E = P.shape[0], P.shape[3], c.shape[0]
    zero = np.float32(0)
    for a in range(p):
        for b in range(p):
            o = out[a, b]
            for e in range(E):
                o[e] = c[e]
            for h in range(H):
                w, row = P[a, b, 0, h], A[h, a]
                for e in range(E):
                    o[e] += w * row[e]
            for h in range(H):
                w, row = P[a, b, 1, h], B[h, b]
                for e in range(E):
                    o[e] += w * row[e]
            if relu:
                for e in range(E):
                    if o[e] < zero:
                        o[e] = zero
