"""``grok_engine.one_layer``'s backward over a leading member axis: M models' hand-written
backward in one pass, each member on its own train rows, after one
:func:`grok_engine.one_layer.grid_forward` of them all (the forward the solo trainer runs
with M = 1).

Every op is one_layer's op with an ``M`` axis in front, so that each member's arithmetic
is the solo trainer's: numpy runs a stacked matmul as one BLAS call per member on the
same [rows, k] x [k, cols] shapes as the solo call, and the elementwise ops and reductions
(softmax over 3 positions, log-softmax over a row) add in the same order. A member
trained in a pack therefore matches the solo trainer to the last bit on one thread
(``tests/engine/test_stacked.py`` holds it to that), which is what lets the pack promise
the solo run's metrics: float32 training is chaotic enough that a rounding difference per
epoch would grow past 1e-5 over a few hundred epochs.

The backward's unembedding and MLP part (:func:`backward_mlp`) runs member by member,
called from the forward (``grid_forward``'s ``after``) as soon as that member's post
[p*p, d_mlp] (1.1 MB at p=23) is made: it is then still in the cache for the gather of the
train rows, the ReLU mask and the weight gradients, and the pack keeps one member's post
at a time, where gathering after every member's forward read 8.7 MB back from memory.
The attention's part (:func:`backward_attention`) then runs stacked, per group of members
with one train row count. Each member still gets the solo backward's BLAS calls on the
same shapes (numpy's stacked matmul is a loop of them), so the numbers are the same.

Shapes: as in one_layer, with ``M`` members first: weights ``[M, ...]``, ``X`` [M, T, D],
``idx3`` [M, n, 3]. A backward runs on members that share their train row count (see
:class:`grok_engine.sweep.stacked.StackedTrainer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grok_engine.config import ModelConfig
from grok_engine.one_layer import ATT, FLOAT32_TINY, MLP, Grid, Tables, sum3, take_rows

Weights = dict[str, np.ndarray]


def _flat_ab(idx3: np.ndarray, n_heads: int, p: int) -> np.ndarray:
    """Where member m's row i's attention from head h to a and b sits in the flattened
    [M, n, H, 2p] matrix (one_layer.Rows.flat_ab with the members one after another)."""
    M, n = idx3.shape[:2]
    head = np.arange(n_heads)[None, None, :, None]
    row = (np.arange(M)[:, None] * n + np.arange(n)[None, :])[:, :, None, None]
    return ((row * n_heads + head) * (2 * p) + idx3[:, :, None, :2]).ravel()


class StackedRows:
    """One_layer's :class:`~grok_engine.one_layer.Rows` of M members (each its own rows, as
    many per member), as indices into the stacked arrays.

    ``canon`` [M, n]: each row's place a * p + b in the grid; ``idx3`` [M, n, 3]: table
    rows of (a, b, '='); ``flat_ab`` [M * n * H * 2]: see :func:`_flat_ab`; ``gather3``
    [M, T, 3n]: one_layer's, per member.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, p: int, n_heads: int):
        """Rows ``[a, b, =]`` of each member: a, b [M, n] int."""
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        idx3 = np.stack([a, b + p, np.full_like(a, 2 * p)], 2)
        self.M, self.n = idx3.shape[:2]
        self.p, self.n_heads, self.idx3 = p, n_heads, idx3
        self.canon = a * p + b
        self.member = np.arange(self.M)[:, None]
        self.flat_ab = _flat_ab(idx3, n_heads, p)
        M, n = self.M, self.n
        self.gather3 = np.zeros((M, 2 * p + 1, 3 * n), np.float32)
        self.gather3[np.repeat(np.arange(M), 3 * n), idx3.reshape(-1), np.tile(np.arange(3 * n), M)] = 1.0
        self._attention: np.ndarray | None = None

    def attention(self, P: np.ndarray) -> np.ndarray:
        """The dense attention matrix A [M, n, H * 2p] of these rows' attention P [M, n, 3, H],
        in a buffer allocated once, zero off ``flat_ab``: those entries are the same every
        epoch (the rows are), so each call only writes the non-zeros, where a fresh zeroed
        A (6 MB for 16 members at p=23) cost a memset of it per epoch."""
        if self._attention is None:
            self._attention = np.zeros((self.M, self.n, self.n_heads * 2 * self.p), np.float32)
        self._attention.reshape(-1)[self.flat_ab] = P[:, :, :2].transpose(0, 1, 3, 2).ravel()
        return self._attention


@dataclass
class Saved:
    """What :func:`backward_attention` reads of one_layer's Saved, per member, on its rows."""

    t: Tables
    P: np.ndarray          # [M, n, 3, H]
    A: np.ndarray          # [M, n, H * 2p]


def saved(g: Grid, members: slice, rows: StackedRows) -> Saved:
    """The attention activations of the members ``members`` of ``g`` (a slice of its stack)
    on their ``rows`` (one set per member); ``A`` is ``rows``' buffer, rewritten by the next
    call."""
    P = g.P[members][rows.member, rows.canon]
    return Saved(g.t.take(members), P, rows.attention(P))


class MlpWork:
    """One member's [n, ...] working arrays of :func:`backward_mlp` (post and resid_mid of
    its rows, dpre), made once and reused by each member in turn."""

    def __init__(self, n: int, cfg: ModelConfig):
        self.post, self.resid_mid, self.dpre = (np.empty((n, d), np.float32)
                                                for d in (cfg.d_mlp, cfg.d_model, cfg.d_mlp))


def backward_mlp(w: Weights, t: Tables, m: int, canon: np.ndarray, resid_mid_grid: np.ndarray,
                 post_grid: np.ndarray, dl: np.ndarray, grads: Weights, dresid: np.ndarray,
                 work: MlpWork) -> None:
    """one_layer.backward's unembedding and MLP part for member ``m`` of the stack (``w``,
    ``t``, ``grads`` [M, ...]) on its rows ``canon`` [n]: its W_out, W_U and W_in gradients,
    and d(loss)/d(resid_mid) into ``dresid`` [n, d_model].

    Called from :func:`grok_engine.one_layer.grid_forward` right after the member's forward
    (``resid_mid_grid`` [p*p, d_model] and ``post_grid`` [p*p, d_mlp] are its grid rows,
    ``dl`` [n, d_vocab_out] its dlogits): its post is still in the cache, where gathered
    after every member's forward it had to come back from memory. The same ops as the solo
    backward on the same shapes, so the same numbers."""
    W_U, W_in, W_out = w["unembed.W_U"][m], w[MLP + "W_in"][m], w[MLP + "W_out"][m]
    post = take_rows(post_grid, canon, work.post)
    resid_mid = take_rows(resid_mid_grid, canon, work.resid_mid)
    dW_logit = post.T @ dl
    np.matmul(dW_logit, W_U.T, out=grads[MLP + "W_out"][m])
    dW_U = np.matmul(resid_mid.T, dl, out=grads["unembed.W_U"][m])
    dW_U += W_out.T @ dW_logit
    dpre = np.matmul(dl, t.W_logit[m].T, out=work.dpre)
    dpre *= post > 0                                                   # ReLU's gradient
    np.matmul(resid_mid.T, dpre, out=grads[MLP + "W_in"][m])
    np.matmul(dpre, W_in.T, out=dresid)
    dresid += dl @ W_U.T


def backward_attention(w: Weights, rows: StackedRows, s: Saved, dresid: np.ndarray,
                       grads: Weights, cfg: ModelConfig) -> None:
    """one_layer.backward's attention and embedding part per member, from ``dresid`` [M, n,
    d_model] (:func:`backward_mlp`'s): the gradients of W_Q, W_K, W_V, W_O, W_E and W_pos
    [M, ...] overwritten."""
    M, n, H, p = rows.M, rows.n, cfg.n_heads, rows.p
    T2 = 2 * p
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    t = s.t

    def T(x: np.ndarray) -> np.ndarray:
        return x.swapaxes(-1, -2)

    dA = np.matmul(dresid, T(t.VO_ab))                                  # [M, n, H * 2p]
    dVO = np.empty_like(t.VO)
    dVO[:, :, :T2] = np.matmul(T(s.A), dresid).reshape(M, H, T2, -1)
    dP = np.empty((M, n, 3, H), np.float32)
    dP[:, :, :2] = dA.reshape(-1)[rows.flat_ab].reshape(M, n, H, 2).transpose(0, 1, 3, 2)
    dP[:, :, 2] = np.matmul(dresid, T(t.VO[:, :, -1]))
    dS = dP
    dS -= sum3(dP * s.P)[:, :, None]
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
