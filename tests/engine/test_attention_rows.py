"""grok_engine.attention_rows: the attention's backward over a member's train rows, against
the same sums in float64 numpy, and its two loops (four heads; any count) bit for bit.
(tests/engine/test_one_layer.py holds the whole backward to autograd.)"""

from __future__ import annotations

import numpy as np

from grok_engine import attention_rows as rows_mod


def _case(H: int, n: int = 11, p: int = 5, D: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    T = 2 * p + 1
    canon = np.sort(rng.choice(p * p, n, replace=False)).astype(np.int64)
    dresid = rng.standard_normal((n, D), np.float32)
    P = rng.random((p, p, 3, H), np.float32)
    P /= P.sum(2, keepdims=True)
    VO = rng.standard_normal((H, T, D), np.float32)
    return canon, dresid, P, np.ascontiguousarray(VO.transpose(2, 1, 0)), VO


def _outputs(H: int, T: int, D: int):
    return (np.full((H, T, D), np.nan, np.float32), np.full((T, H), np.nan, np.float32),
            np.full(D, np.nan, np.float32))


def _reference(canon, dresid, P, VO):
    """d(scores) [T, H], d(VO) [H, T, D] and the rows' sum, in float64, pair by pair."""
    H, T, D = VO.shape
    p = (T - 1) // 2
    dSt, dVO = np.zeros((T, H)), np.zeros((H, T, D))
    for c, g in zip(canon, dresid.astype(np.float64)):
        a, b = divmod(int(c), p)
        places = (a, p + b, 2 * p)
        for h in range(H):
            w = P[a, b, :, h].astype(np.float64)
            dP = np.array([g @ VO[h, t] for t in places])
            for j, t in enumerate(places):
                dSt[t, h] += w[j] * (dP[j] - w @ dP)
                dVO[h, t] += w[j] * g
    return dVO, dSt, dresid.astype(np.float64).sum(0)


def test_rows_give_the_softmax_backward_and_the_value_sums():
    for H in (4, 2):
        canon, dresid, P, VO_T, VO = _case(H)
        got = _outputs(H, VO.shape[1], VO.shape[2])
        rows_mod.attention_rows(canon, dresid, P, VO_T, *got)
        for g, want in zip(got, _reference(canon, dresid, P, VO)):
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


def test_the_four_head_loop_is_the_general_loop_bit_for_bit():
    canon, dresid, P, VO_T, VO = _case(4, seed=1)
    four, any_ = _outputs(4, VO.shape[1], VO.shape[2]), _outputs(4, VO.shape[1], VO.shape[2])
    rows_mod._rows4(canon, dresid, P, VO_T, *four)
    rows_mod._rows_any(canon, dresid, P, VO_T, *any_)
    for x, y in zip(four, any_):
        assert np.array_equal(x.view(np.int32), y.view(np.int32))
