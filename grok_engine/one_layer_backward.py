"""The hand-written backward of :mod:`grok_engine.one_layer`'s model, for M members at once
(the solo trainer is M = 1): the gradients of every weight from dlogits on each member's
train rows, after one :func:`~grok_engine.one_layer.grid_forward` of every pair.

Three parts, each on the shapes where it is cheapest:

* :func:`backward_mlp`, member by member on its n train rows, called from the forward
  (``grid_forward``'s ``after``) as soon as that member's post [p*p, d_mlp] is made: it is
  then still in the cache for the gather of the train rows, the ReLU mask and the weight
  gradients (gathered after every member's forward, a pack's post at p=23, 8.7 MB, came
  back from memory). It returns d(loss)/d(resid_mid) of the member's train rows.
* :func:`grok_engine.attention_rows.attention_rows`, right after it on those rows (one
  compiled loop): d(scores) and d(VO) through the attention's softmax.
* :func:`backward_attention`, stacked over all members: from those two, the gradients of
  W_Q, W_K, W_V, W_O, W_E and W_pos.

Every op is a member's own: numpy runs a stacked matmul as one BLAS call per member (per
member and row group) on the same shapes whatever M is, and the elementwise ops and
reductions add in the same order, so a member's gradient is the same bits in a pack as
alone on one BLAS thread (``tests/engine/test_stacked.py``). Float32 training is chaotic
enough that a rounding difference per epoch would grow past 1e-5 in a few hundred epochs.

Shapes: weights ``[M, ...]``; ``p`` tokens and '='; ``T = 2p + 1`` table rows; ``H`` heads;
``D`` = d_model; ``F`` = d_mlp; the grid ``[M, p(a), p(b), ...]`` in the order a * p + b.
"""

from __future__ import annotations

import numpy as np

from grok_engine.config import ModelConfig
from grok_engine import param_names as names
from grok_engine.one_layer import ATT, MLP, Tables, padded_width, take_rows

Weights = dict[str, np.ndarray]


class MlpWork:
    """One member's working arrays of :func:`backward_mlp` on n rows, made once and reused
    by every member with n rows: fresh ones every call cost page faults (~220 per epoch for
    8 members at p=23: glibc hands the freed memory back to the system and maps it again)."""

    def __init__(self, n: int, cfg: ModelConfig, d_vocab_out: int):
        D, F, width = cfg.d_model, cfg.d_mlp, padded_width(d_vocab_out)
        self.post, self.dpre = np.empty((n, F), np.float32), np.empty((n, F), np.float32)
        self.resid_mid, self.dresid, self.dresid_U = (np.empty((n, D), np.float32) for _ in range(3))
        self.active = np.empty((n, F), bool)
        self.dl = np.zeros((n, width), np.float32)   # dlogits, zero past d_vocab_out
        self.dW_logit = np.empty((F, width), np.float32)
        self.dW_U, self.dW_U_out = np.empty((D, width), np.float32), np.empty((D, width), np.float32)


def backward_mlp(w: Weights, t: Tables, m: int, canon: np.ndarray, resid_mid_grid: np.ndarray,
                 post_grid: np.ndarray, dlogits: np.ndarray, grads: Weights, work: MlpWork) -> np.ndarray:
    """The unembedding and MLP part for member ``m`` (of ``w``, ``t``, ``grads`` [M, ...]) on
    its rows ``canon`` [n] (places a * p + b in the grid): its W_out, W_U and W_in gradients
    overwritten; returns d(loss)/d(resid_mid) of those rows [n, D] (a buffer of ``work``).

    ``resid_mid_grid`` [p*p, D] and ``post_grid`` [p*p, F] are its forward's grid rows,
    ``dlogits`` [n, d_vocab_out] its dlogits. logits = resid_mid @ W_U + post @ W_logit
    with W_logit = W_out @ W_U (no final LayerNorm), post = relu(pre); W_U and W_logit
    padded with zero columns (one_layer.padded_width), and dlogits with zeros likewise."""
    W_U, W_in, W_out = t.W_U[m], w[MLP + "W_in"][m], w[MLP + "W_out"][m]
    V = dlogits.shape[1]
    dl = work.dl
    dl[:, :V] = dlogits
    post = take_rows(post_grid, canon, work.post)
    resid_mid = take_rows(resid_mid_grid, canon, work.resid_mid)
    dW_logit = np.matmul(post.T, dl, out=work.dW_logit)
    np.matmul(dW_logit, W_U.T, out=grads[MLP + "W_out"][m])
    dW_U = np.matmul(resid_mid.T, dl, out=work.dW_U)
    dW_U += np.matmul(W_out.T, dW_logit, out=work.dW_U_out)
    grads[names.W_U][m] = dW_U[:, :V]
    dpre = np.matmul(dl, t.W_logit[m].T, out=work.dpre)
    dpre *= np.greater(post, 0, out=work.active)                       # ReLU's gradient
    np.matmul(resid_mid.T, dpre, out=grads[MLP + "W_in"][m])
    dresid = np.matmul(dpre, W_in.T, out=work.dresid)
    dresid += np.matmul(dl, W_U.T, out=work.dresid_U)
    return dresid


class AttentionWork:
    """What the attention's backward writes for M members at ``p``, allocated once: fresh
    arrays every epoch cost page faults (~700 per epoch for 8 members at p=23, as glibc
    hands the freed memory back to the system and maps it again). ``VO_T`` is one member's
    VO table with the heads last, for :func:`~grok_engine.attention_rows.attention_rows`."""

    def __init__(self, M: int, p: int, cfg: ModelConfig):
        H, D, T = cfg.n_heads, cfg.d_model, 2 * p + 1
        self.VO_T = np.empty((D, T, H), np.float32)
        self.dVO = np.empty((M, H, T, D), np.float32)
        self.dSt = np.empty((M, T, H), np.float32)
        self.dsum = np.empty((M, D), np.float32)
        self.dV_W = np.empty((M, H, T, D), np.float32)      # dV @ W_V.T, summed over heads

    def rows(self, t: Tables, m: int, canon: np.ndarray, dresid: np.ndarray, P: np.ndarray) -> None:
        """Member ``m``'s d(scores), d(VO) and sum of ``dresid`` [n, D] over its train rows
        ``canon``, from its attention ``P`` [p, p, 3, H] (the forward's)."""
        from grok_engine.attention_rows import attention_rows  # numba: on first use

        np.copyto(self.VO_T, t.VO[m].transpose(2, 1, 0))
        attention_rows(canon, dresid, P, self.VO_T, self.dVO[m], self.dSt[m], self.dsum[m])


def backward_attention(w: Weights, t: Tables, grads: Weights, cfg: ModelConfig, work: AttentionWork) -> None:
    """The attention and embedding part for every member, from d(scores) and d(VO) that
    :meth:`AttentionWork.rows` made for each: the gradients of W_Q, W_K, W_V, W_O, W_E and
    W_pos [M, ...] overwritten.

    scores = X @ k_dir.T, k_dir[h] = W_K[h] @ q_s[h], q_s = x_eq @ W_Q / sqrt(d_head);
    VO = X @ W_V @ W_O; X = W_E[token] + W_pos[position]; x_eq (X's '=' row) also enters
    resid_mid directly."""
    M, D = work.dsum.shape
    T2 = work.dSt.shape[1] - 1
    p = T2 // 2
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    dSt, dVO = work.dSt, work.dVO                                       # [M, T, H], [M, H, T, D]

    def T(x: np.ndarray) -> np.ndarray:
        return x.swapaxes(-1, -2)

    u = np.matmul(T(t.X), dSt)                                         # [M, D, H] = d(k_dir).T
    uT = T(u)
    np.multiply(uT[:, :, :, None], t.q_s[:, :, None, :], out=grads[ATT + "W_K"])
    dq = np.matmul(T(W_K), uT[:, :, :, None])[:, :, :, 0]
    dq *= np.float32(cfg.d_head ** -0.5)
    x_eq = t.X[:, -1]
    np.multiply(x_eq[:, None, :, None], dq[:, :, None, :], out=grads[ATT + "W_Q"])
    np.matmul(T(t.V), dVO, out=grads[ATT + "W_O"])
    dV = np.matmul(dVO, T(W_O))                                        # [M, H, T, d_head]
    np.matmul(T(t.X)[:, None], dV, out=grads[ATT + "W_V"])
    dX = np.matmul(dV, T(W_V), out=work.dV_W).sum(1)                   # [M, T, D]
    dX += np.matmul(dSt, t.k_dir)
    dX[:, -1] += work.dsum + np.matmul(W_Q, dq[:, :, :, None]).sum(1)[:, :, 0]
    # a-rows and b-rows share the number tokens
    dW_E, dW_pos = grads["embed.W_E"], grads["pos_embed.W_pos"]
    np.add(dX[:, :p], dX[:, p:T2], out=dW_E[:, :p])
    dW_E[:, p] = dX[:, T2]
    dX[:, :p].sum(1, out=dW_pos[:, 0])
    dX[:, p:T2].sum(1, out=dW_pos[:, 1])
    dW_pos[:, 2] = dX[:, T2]
