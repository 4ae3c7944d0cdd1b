"""grok_engine.table_mix.mix, the compiled sum of attention-weighted table rows, against
numpy doing the same float32 adds in the same order: the same bits, for the notebook's four
heads (the register loop) and for other head counts (the loop through ``out``)."""

from __future__ import annotations

import numpy as np
import pytest

from grok_engine.table_mix import mix


def _reference(P, A, B, c, relu):
    """c + sum_h P[a,b,0,h] A[h,a] + sum_h P[a,b,1,h] B[h,b], one float32 add at a time."""
    p, H = P.shape[0], P.shape[3]
    out = np.broadcast_to(c, (p, p, c.shape[0])).copy()
    for h in range(H):
        out += P[:, :, 0, h, None] * A[h, :p][:, None, :]
    for h in range(H):
        out += P[:, :, 1, h, None] * B[h][None, :, :]
    if relu:
        out[out < 0] = 0
    return out


@pytest.mark.parametrize("H", [4, 1, 3])
@pytest.mark.parametrize("relu", [True, False])
def test_mix_is_the_sum_in_order_bit_for_bit(H, relu):
    rng = np.random.default_rng(H)
    p, E = 7, 20  # E not a multiple of the vector width
    P = rng.random((p, p, 3, H), np.float32)
    P /= P.sum(2, keepdims=True)
    A = rng.standard_normal((H, p + 2, E), np.float32)  # rows past p are not read
    B = rng.standard_normal((H, p, E), np.float32)
    c = rng.standard_normal(E).astype(np.float32)
    out = np.full((p, p, E), np.nan, np.float32)
    assert mix(P, A, B, c, relu, out) is out
    want = _reference(P, A, B, c, relu)
    assert np.array_equal(out.view(np.int32), want.view(np.int32))
    assert (out >= 0).all() == relu


def test_relu_keeps_nan_and_zeroes_negatives():
    """A NaN pre-activation stays NaN (as with np.maximum), so a diverging run's loss is
    NaN and the trainer sees it; -inf and negatives become 0."""
    p, H, E = 2, 4, 8
    P = np.full((p, p, 3, H), 1 / 3, np.float32)
    A = np.zeros((H, p, E), np.float32)
    B = np.zeros((H, p, E), np.float32)
    c = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1e-40, 2.0, np.inf], np.float32)
    out = mix(P, A, B, c, True, np.empty((p, p, E), np.float32))
    assert np.isnan(out[..., 0]).all()
    np.testing.assert_array_equal(out[0, 0, 1:], np.array([0, 0, 0, 0, 1e-40, 2, np.inf], np.float32))
