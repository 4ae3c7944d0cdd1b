"""``grok_engine.one_layer`` over a leading member axis: M models' numpy forward and
hand-written backward in one pass, each member on its own rows.

Every op is one_layer's op with an ``M`` axis in front, so that each member's arithmetic
is the solo trainer's: numpy runs a stacked matmul as one BLAS call per member on the
same [rows, k] x [k, cols] shapes as the solo call, and the elementwise ops and reductions
(softmax over 3 positions, log-softmax over a row) add in the same order. A member
trained in a pack therefore matches the solo trainer to the last bit on one thread
(``tests/engine/test_stacked.py`` holds it to that), which is what lets the pack promise
the solo run's metrics: float32 training is chaotic enough that a rounding difference per
epoch would grow past 1e-5 over a few hundred epochs.

The MLP and unembedding (and the attention's value matmuls) run member by member in a
Python loop, each member's chain of matmuls and the ReLU one after another, where numpy's
stacked matmul ran each op over all members before the next: a member's post [n, d_mlp]
(1.1 MB at p=23) is then still in the cache when the ReLU, the unembedding and the
backward's mask read it, rather than 8.7 MB of every member's. Each member still gets the
same BLAS calls on the same shapes (numpy's stacked matmul is a loop of them), so the
numbers are the same; measured on the AMD EPYC (2 packs of 8 in parallel, p=23, notebook
model): 9% more model-epochs per second.

Shapes: as in one_layer, with ``M`` members first: weights ``[M, ...]``, ``X`` [M, T, D],
``idx3`` [M, n, 3]. Members share ``n`` (every member's forward runs all p*p rows, its
train rows first); a backward runs on members that share their train row count (see
:class:`grok_engine.sweep.stacked.StackedTrainer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grok_engine.config import ModelConfig
from grok_engine.one_layer import ATT, FLOAT32_TINY, MLP, relu_

Weights = dict[str, np.ndarray]


def _flat_ab(idx3: np.ndarray, n_heads: int, p: int) -> np.ndarray:
    """Where member m's row i's attention from head h to a and b sits in the flattened
    [M, n, H, 2p] matrix (one_layer.Rows.flat_ab with the members one after another)."""
    M, n = idx3.shape[:2]
    head = np.arange(n_heads)[None, None, :, None]
    row = (np.arange(M)[:, None] * n + np.arange(n)[None, :])[:, :, None, None]
    return ((row * n_heads + head) * (2 * p) + idx3[:, :, None, :2]).ravel()


class StackedRows:
    """One_layer's :class:`~grok_engine.one_layer.Rows` of M members (each its own order of
    rows), as indices into the stacked arrays.

    ``idx3`` [M, n, 3]: table rows of (a, b, '='); ``flat_ab`` [M * n * H * 2]: see
    :func:`_flat_ab`; ``gather3`` [M, T, 3n]: one_layer's, per member.
    """

    def __init__(self, idx3: np.ndarray, p: int, n_heads: int, gather3: np.ndarray | None = None):
        self.M, self.n = idx3.shape[:2]
        self.p, self.n_heads, self.idx3 = p, n_heads, idx3
        self.member = np.arange(self.M)[:, None, None]
        self.flat_ab = _flat_ab(idx3, n_heads, p)
        if gather3 is None:
            M, n = self.M, self.n
            gather3 = np.zeros((M, 2 * p + 1, 3 * n), np.float32)
            gather3[np.repeat(np.arange(M), 3 * n), idx3.reshape(-1), np.tile(np.arange(3 * n), M)] = 1.0
        self.gather3 = gather3
        self._attention: np.ndarray | None = None
        self._buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def attention_buffer(self, n_heads: int) -> np.ndarray:
        """The dense attention matrix A [M, n, H * 2p] that :func:`forward` fills: allocated
        once, zero off ``flat_ab``. Those entries are the same every epoch (the rows are), so
        each forward only writes them, where a fresh zeroed A (6 MB for 16 members at p=23)
        cost a memset of it per epoch."""
        if self._attention is None:
            self._attention = np.zeros((self.M, self.n, n_heads * 2 * self.p), np.float32)
        return self._attention

    def forward_buffers(self, d_model: int, d_mlp: int,
                        d_vocab_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """resid_mid [M, n, d_model], post [M, n, d_mlp] and logits [M, n, d_vocab_out]
        that :func:`forward` writes, allocated once (as the attention buffer): post alone is
        8.7 MB for 8 members at p=23, and a fresh one per epoch cost 5% of the forward."""
        if self._buffers is None:
            self._buffers = tuple(np.empty((self.M, self.n, d), np.float32)
                                  for d in (d_model, d_mlp, d_vocab_out))
        return self._buffers

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray, p: int, n_heads: int) -> "StackedRows":
        """Rows ``[a, b, =]`` of each member: a, b [M, n] int."""
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        return cls(np.stack([a, b + p, np.full_like(a, 2 * p)], 2), p, n_heads)

    def head(self, members: slice | np.ndarray, n: int) -> "StackedRows":
        """The first ``n`` rows of the members ``members`` (a slice or indices of this stack)."""
        return StackedRows(self.idx3[members, :n], self.p, self.n_heads,
                           np.ascontiguousarray(self.gather3[members, :, :3 * n]))


@dataclass
class Tables:
    """one_layer's per-token tables, per member."""

    X: np.ndarray          # [M, T, d_model]
    q_s: np.ndarray        # [M, H, d_head]
    k_dir: np.ndarray      # [M, H, d_model]
    scores: np.ndarray     # [M, T, H]
    V: np.ndarray          # [M, H, T, d_head]
    VO: np.ndarray         # [M, H, T, d_model]
    VO_ab: np.ndarray      # [M, H * 2p, d_model]
    W_logit: np.ndarray    # [M, d_mlp, d_vocab_out]

    def take(self, members: slice) -> "Tables":
        """The members ``members``' tables (views)."""
        return Tables(*(getattr(self, f)[members] for f in self.__dataclass_fields__))


def tables(w: Weights, p: int, cfg: ModelConfig) -> Tables:
    H = cfg.n_heads
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    M = W_E.shape[0]
    X = np.empty((M, 2 * p + 1, W_E.shape[2]), np.float32)
    np.add(W_E[:, :p], W_pos[:, 0:1], out=X[:, :p])
    np.add(W_E[:, :p], W_pos[:, 1:2], out=X[:, p:2 * p])
    np.add(W_E[:, p], W_pos[:, 2], out=X[:, 2 * p])
    q_s = np.matmul(X[:, None, -1:], w[ATT + "W_Q"])[:, :, 0] * np.float32(cfg.d_head ** -0.5)
    k_dir = np.matmul(w[ATT + "W_K"], q_s[:, :, :, None])[:, :, :, 0]
    V = np.matmul(X[:, None], w[ATT + "W_V"])
    VO = np.matmul(V, w[ATT + "W_O"])
    W_logit = np.matmul(w[MLP + "W_out"], w["unembed.W_U"])
    scores = np.matmul(X, k_dir.transpose(0, 2, 1))
    return Tables(X, q_s, k_dir, scores, V, VO, VO[:, :, :2 * p].reshape(M, H * 2 * p, -1), W_logit)


@dataclass
class Saved:
    t: Tables
    P: np.ndarray          # [M, n, 3, H]
    A: np.ndarray          # [M, n, H * 2p]
    resid_mid: np.ndarray  # [M, n, d_model]
    post: np.ndarray       # [M, n, d_mlp]

    def head(self, members: slice, n: int) -> "Saved":
        """Views of the first ``n`` rows of the members ``members`` (a slice of the stack)."""
        return Saved(self.t.take(members), self.P[members, :n], self.A[members, :n],
                     self.resid_mid[members, :n], self.post[members, :n])


def _max3(x: np.ndarray) -> np.ndarray:
    """x.max(2) of x [M, n, 3, H], position by position."""
    out = np.maximum(x[:, :, 0], x[:, :, 1])
    return np.maximum(out, x[:, :, 2], out=out)


def _sum3(x: np.ndarray) -> np.ndarray:
    """x.sum(2) of x [M, n, 3, H], added in numpy's order: (x0 + x1) + x2."""
    out = np.add(x[:, :, 0], x[:, :, 1])
    out += x[:, :, 2]
    return out


def forward(w: Weights, rows: StackedRows, cfg: ModelConfig) -> tuple[np.ndarray, Saved]:
    """Logits at '=' [M, n, d_vocab_out] float32 and the activations for :func:`backward`.
    The logits and the Saved's ``A``, ``resid_mid`` and ``post`` are ``rows``' buffers
    (:meth:`StackedRows.attention_buffer`, :meth:`StackedRows.forward_buffers`): the next
    forward on the same rows overwrites them, so a backward reads the latest forward only."""
    t = tables(w, rows.p, cfg)
    M, n, H, T2 = rows.M, rows.n, cfg.n_heads, 2 * rows.p
    S = t.scores[rows.member, rows.idx3]                                # [M, n, 3, H]
    # The softmax over the 3 positions with the position axis unrolled: one_layer's
    # max(1) and sum(1) over that axis are (x0 max x1) max x2 and (x0 + x1) + x2, the same
    # numbers, in a third of the time of numpy's reduction over a short strided axis.
    S -= _max3(S)[:, :, None]
    np.exp(S, out=S)
    P = S
    P /= _sum3(S)[:, :, None]
    A = rows.attention_buffer(H)
    A.reshape(-1)[rows.flat_ab] = P[:, :, :2].transpose(0, 1, 3, 2).ravel()
    resid_mid, post, logits = rows.forward_buffers(cfg.d_model, cfg.d_mlp, t.W_logit.shape[-1])
    attn_eq = np.matmul(P[:, :, 2], t.VO[:, :, -1])                    # [M, n, d_model]
    W_in, W_U = w[MLP + "W_in"], w["unembed.W_U"]
    for m in range(M):  # member by member: see the module docstring (cache)
        r = np.matmul(A[m], t.VO_ab[m], out=resid_mid[m])
        r += attn_eq[m]
        r += t.X[m, -1]
        h = np.matmul(r, W_in[m], out=post[m])
        relu_(h)
        out = np.matmul(h, t.W_logit[m], out=logits[m])
        out += r @ W_U[m]
    return logits, Saved(t, P, A, resid_mid, post)


def backward(w: Weights, rows: StackedRows, s: Saved, dlogits: np.ndarray, grads: Weights,
             cfg: ModelConfig) -> None:
    """one_layer.backward per member: ``grads[name]`` [M, ...] overwritten."""
    M, n, H, p = rows.M, rows.n, cfg.n_heads, rows.p
    T2 = 2 * p
    W_U, W_in, W_out = w["unembed.W_U"], w[MLP + "W_in"], w[MLP + "W_out"]
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    t = s.t

    def T(x: np.ndarray) -> np.ndarray:
        return x.swapaxes(-1, -2)

    dresid = np.empty((M, n, cfg.d_model), np.float32)
    dA = np.empty((M, n, H * T2), np.float32)
    dVO = np.empty_like(t.VO)
    dpre = np.empty((n, cfg.d_mlp), np.float32)   # one member's at a time, reused
    g_out, g_U, g_in = grads[MLP + "W_out"], grads["unembed.W_U"], grads[MLP + "W_in"]
    for m in range(M):  # member by member: see the module docstring (cache)
        post, resid_mid, dl = s.post[m], s.resid_mid[m], dlogits[m]
        dW_logit = post.T @ dl
        np.matmul(dW_logit, W_U[m].T, out=g_out[m])
        dW_U = np.matmul(resid_mid.T, dl, out=g_U[m])
        dW_U += W_out[m].T @ dW_logit
        np.matmul(dl, t.W_logit[m].T, out=dpre)
        dpre *= post > 0
        np.matmul(resid_mid.T, dpre, out=g_in[m])
        dr = np.matmul(dpre, W_in[m].T, out=dresid[m])
        dr += dl @ W_U[m].T
        np.matmul(dr, t.VO_ab[m].T, out=dA[m])
        dVO[m, :, :T2] = (s.A[m].T @ dr).reshape(H, T2, -1)
    dP = np.empty((M, n, 3, H), np.float32)
    dP[:, :, :2] = dA.reshape(-1)[rows.flat_ab].reshape(M, n, H, 2).transpose(0, 1, 3, 2)
    dP[:, :, 2] = np.matmul(dresid, T(t.VO[:, :, -1]))
    dS = dP
    dS -= _sum3(dP * s.P)[:, :, None]
    dS *= s.P
    dSt = np.matmul(rows.gather3, dS.reshape(M, 3 * n, H))              # [M, T, H]
    dVO[:, :, T2] = np.matmul(T(s.P[:, :, 2]), dresid)
    u = np.matmul(T(t.X), dSt)                                           # [M, d_model, H]
    uT = T(u)
    np.multiply(uT[:, :, :, None], t.q_s[:, :, None, :], out=grads[ATT + "W_K"])
    dq = np.matmul(T(W_K), uT[:, :, :, None])[:, :, :, 0]
    dq *= np.float32(cfg.d_head ** -0.5)
    x_eq = t.X[:, -1]
    np.multiply(x_eq[:, None, :, None], dq[:, :, None, :], out=grads[ATT + "W_Q"])
    np.matmul(T(t.V), dVO, out=grads[ATT + "W_O"])
    dV = np.matmul(dVO, T(W_O))
    np.matmul(T(t.X)[:, None], dV, out=grads[ATT + "W_V"])
    dX = np.matmul(dV, T(W_V)).sum(1)                          # [M, T, d_model]
    dX += np.matmul(dSt, t.k_dir)
    dX[:, -1] += dresid.sum(1) + np.matmul(W_Q, dq[:, :, :, None]).sum(1)[:, :, 0]
    dW_E, dW_pos = grads["embed.W_E"], grads["pos_embed.W_pos"]
    np.add(dX[:, :p], dX[:, p:T2], out=dW_E[:, :p])
    dW_E[:, p] = dX[:, T2]
    dX[:, :p].sum(1, out=dW_pos[:, 0])
    dX[:, p:T2].sum(1, out=dW_pos[:, 1])
    dW_pos[:, 2] = dX[:, T2]


def log_probs(logits: np.ndarray) -> np.ndarray:
    """one_layer.log_probs over the last axis of [M, n, vocab]."""
    x = logits.astype(np.float64)
    x -= x.max(-1, keepdims=True)
    x -= np.log(np.exp(x).sum(-1, keepdims=True))
    return x


def loss_and_dlogits(logits: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per member: loss [M] (float64) and dlogits [M, n, vocab] (float32), as one_layer's."""
    logp = log_probs(logits)
    n = logits.shape[1]
    loss = np.array([-float(np.vdot(lp, oh)) / n for lp, oh in zip(logp, onehot)])
    dlogits = np.exp(logp)
    dlogits -= onehot
    dlogits /= n
    dlogits[np.abs(dlogits) < FLOAT32_TINY] = 0.0
    return loss, dlogits.astype(np.float32)


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray,
                      onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per member: mean cross-entropy [M] (float64) and accuracy [M]."""
    n = logits.shape[1]
    loss = np.array([-float(np.vdot(lp, oh)) / n for lp, oh in zip(log_probs(logits), onehot)])
    return loss, (logits.argmax(-1) == labels).mean(1)
