"""The hand-written backward of :mod:`grok_engine.one_layer`'s model, for M members at once
(the solo trainer is M = 1): the gradients of every weight from dlogits on each member's
train rows, after one :func:`~grok_engine.one_layer.grid_forward` of every pair.

Two parts, each on the shapes where it is cheapest:

* :func:`backward_mlp`, member by member on its n train rows, called from the forward
  (``grid_forward``'s ``after``) as soon as that member's post [p*p, d_mlp] is made: it is
  then still in the cache for the gather of the train rows, the ReLU mask and the weight
  gradients (gathered after every member's forward, a pack's post at p=23, 8.7 MB, came
  back from memory). It scatters d(loss)/d(resid_mid) into the member's grid rows.
* :func:`backward_attention`, stacked over all members on the whole grid: d(resid_mid) is
  0 on the rows a member does not train on, so they add nothing, and the attention from
  '=' to a (to b) of the pairs with one a (one b) is one small matmul, as in the forward's
  ``_mix``. Members with train splits of different sizes therefore share one backward (no
  groups), and it needs neither the dense [n, H, 2p] attention matrix nor the gather of
  the train rows' attention that the row-shaped backward made every epoch: measured on 8
  members at p=23 (AMD EPYC), 1.09 ms against 1.87 ms plus ~0.75 ms of gathers.

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
                 post_grid: np.ndarray, dlogits: np.ndarray, grads: Weights, dresid_grid: np.ndarray,
                 work: MlpWork) -> None:
    """The unembedding and MLP part for member ``m`` (of ``w``, ``t``, ``grads`` [M, ...]) on
    its rows ``canon`` [n] (places a * p + b in the grid): its W_out, W_U and W_in gradients
    overwritten, and d(loss)/d(resid_mid) written to its rows of ``dresid_grid`` [p*p, D]
    (the other rows are left as they are: 0).

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
    dresid_grid[canon] = dresid


class AttentionWork:
    """What :func:`backward_attention` writes for M members at ``p``, allocated once: fresh
    arrays every epoch cost page faults (~700 per epoch for 8 members at p=23, as glibc
    hands the freed memory back to the system and maps it again)."""

    def __init__(self, M: int, p: int, cfg: ModelConfig):
        H, D, T = cfg.n_heads, cfg.d_model, 2 * p + 1
        grid = (M, p, p, H)
        self.dP0, self.dP_b, self.dP2, self.s, self.prod, self.dS1 = (np.empty(grid, np.float32) for _ in range(6))
        self.dVO = np.empty((M, H, T, D), np.float32)
        self.dVO_a = np.empty((M, p, H, D), np.float32)
        self.dVO_b = np.empty((M, p, H, D), np.float32)
        self.dSt = np.empty((M, T, H), np.float32)
        self.dV_W = np.empty((M, H, T, D), np.float32)      # dV @ W_V.T, summed over heads


def backward_attention(w: Weights, t: Tables, P: np.ndarray, dresid: np.ndarray, grads: Weights,
                       cfg: ModelConfig, work: AttentionWork) -> None:
    """The attention and embedding part for every member, from ``dresid`` [M, p, p, D]
    (:func:`backward_mlp`'s, 0 off the train rows) and the forward's attention ``P`` [M, p,
    p, 3, H] (from '=' to a, b, '='): the gradients of W_Q, W_K, W_V, W_O, W_E and W_pos
    [M, ...] overwritten.

    resid_mid[a, b] = x_eq + sum_h P[a,b,0,h] VO[h,a] + P[a,b,1,h] VO[h,p+b] + P[a,b,2,h] VO[h,2p];
    scores = X @ k_dir.T, k_dir[h] = W_K[h] @ q_s[h], q_s = x_eq @ W_Q / sqrt(d_head);
    VO = X @ W_V @ W_O; X = W_E[token] + W_pos[position]."""
    M, p, D = dresid.shape[0], dresid.shape[1], dresid.shape[3]
    H, T2 = cfg.n_heads, 2 * p
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    VO = t.VO                                                          # [M, H, T, D]
    P0, P1, P2 = P[..., 0, :], P[..., 1, :], P[..., 2, :]              # [M, p(a), p(b), H]
    by_b = dresid.transpose(0, 2, 1, 3)                                # [M, p(b), p(a), D]
    flat = dresid.reshape(M, p * p, D)
    # d(attention): to a, one matmul per a; to b, one per b; to '=', one for every pair
    dP0 = np.matmul(dresid, VO[:, :, :p].transpose(0, 2, 3, 1), out=work.dP0)
    dP1 = np.matmul(by_b, VO[:, :, p:T2].transpose(0, 2, 3, 1), out=work.dP_b).transpose(0, 2, 1, 3)
    dP2 = np.matmul(flat, VO[:, :, T2].transpose(0, 2, 1), out=work.dP2.reshape(M, p * p, H)).reshape(M, p, p, H)
    # softmax over the 3 positions: dS_j = P_j * (dP_j - sum_k P_k dP_k)
    s, prod = work.s, work.prod
    np.multiply(P0, dP0, out=s)
    s += np.multiply(P1, dP1, out=prod)
    s += np.multiply(P2, dP2, out=prod)
    dS0, dS1, dS2 = dP0, np.subtract(dP1, s, out=work.dS1), dP2  # dP1: a view of work.dP_b
    dS0 -= s
    dS2 -= s
    for dS, Pj in ((dS0, P0), (dS1, P1), (dS2, P2)):
        dS *= Pj
    dSt = work.dSt                                                     # d(scores) [M, T, H]
    dS0.sum(2, out=dSt[:, :p])
    dS1.sum(1, out=dSt[:, p:T2])
    dS2.reshape(M, p * p, H).sum(1, out=dSt[:, T2])
    # d(VO): attention-weighted sums of d(resid_mid), grouped as d(attention)
    dVO = work.dVO
    np.matmul(P0.transpose(0, 1, 3, 2), dresid, out=work.dVO_a)       # [M, p(a), H, D]
    dVO[:, :, :p] = work.dVO_a.transpose(0, 2, 1, 3)
    np.matmul(P1.transpose(0, 2, 3, 1), by_b, out=work.dVO_b)         # [M, p(b), H, D]
    dVO[:, :, p:T2] = work.dVO_b.transpose(0, 2, 1, 3)
    np.matmul(P2.reshape(M, p * p, H).transpose(0, 2, 1), flat, out=dVO[:, :, T2])

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
    dX[:, -1] += flat.sum(1) + np.matmul(W_Q, dq[:, :, :, None]).sum(1)[:, :, 0]
    # a-rows and b-rows share the number tokens
    dW_E, dW_pos = grads["embed.W_E"], grads["pos_embed.W_pos"]
    np.add(dX[:, :p], dX[:, p:T2], out=dW_E[:, :p])
    dW_E[:, p] = dX[:, T2]
    dX[:, :p].sum(1, out=dW_pos[:, 0])
    dX[:, p:T2].sum(1, out=dW_pos[:, 1])
    dW_pos[:, 2] = dX[:, T2]
