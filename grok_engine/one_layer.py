"""The notebook's model trained on the CPU without autograd or torch: a numpy forward that
keeps what the backward needs, and the backward derived by hand.

Which models: one layer, no LayerNorm, ReLU, every bias absent (the notebook freezes them
at zero; ``Trainer`` leaves all-zero frozen biases out of the weights), on the CPU. Any
other model, and any model on a GPU, trains through autograd on
:func:`grok_engine.fast.last_logits`.

Why numpy: at p=10 an epoch is about a hundred ops on matrices of a few hundred rows.
A torch op costs ~5-8 us of dispatch before any arithmetic and autograd adds a graph node
per op; a numpy op costs ~1-2 us. Here the backward is ~40 ops, each weight gradient is
written straight into the trainer's flat gradient (numpy views of the torch tensor that
AdamW steps), and nothing is zeroed or accumulated twice.

The function is :func:`grok_engine.fast.last_logits`'s (the same per-token tables, the
same last-position-only MLP), so both paths train the same model; ``tests/engine/
test_one_layer.py`` holds the loss and gradients to autograd's.

Shapes: ``p`` tokens plus '=' (index ``p``); ``T = 2p + 1`` table rows (a-tokens at
position 0, b-tokens at position 1, '=' at position 2); ``n`` rows ``[a, b, =]``; ``H``
heads of ``d_head``; ``d_model``; ``d_mlp``; ``d_vocab_out``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from grok_engine import param_names as names
from grok_engine.config import ModelConfig

ATT, MLP = names.attn(0), names.mlp(0)
WEIGHTS = (names.W_E, names.W_POS, ATT + "W_Q", ATT + "W_K", ATT + "W_V", ATT + "W_O",
           MLP + "W_in", MLP + "W_out", names.W_U)

Weights = dict[str, np.ndarray]

# Once the model fits its train rows, a wrong class's probability falls below 1e-38 and its
# gradient entry is a float32 subnormal (5-10% of dlogits from epoch ~1500 of the notebook's
# run). Every matmul that reads one then pays a microcode assist per product on Intel CPUs
# (~100 cycles; AMD's Zen pays almost none): the backward ran 2-3x slower on a Xeon. Such an
# entry is < 1e-38 beside entries of ~1e-3 in the same sums, so setting it to 0 moves no
# gradient by as much as its float32 rounding, and being explicit (not the CPU's FTZ/DAZ
# mode) keeps every CPU and both training paths on the same numbers.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def supported(cfg: ModelConfig, names: set[str] | frozenset[str]) -> bool:
    """True when the hand-written backward covers this model with exactly these weights."""
    return (cfg.n_layers == 1 and cfg.normalization == "none" and cfg.act_fn == "relu"
            and set(names) == set(WEIGHTS))


class Rows:
    """Index arrays for a set of rows ``[a, b, =]`` into the token tables.

    ``idx3`` [n, 3]: table rows of (a, b, '='); ``flat_ab`` [n * H * 2]: where row i's
    attention from head h to a and b sits in the flattened dense [n, H, 2p] matrix;
    ``gather3`` [T, 3n] float32: 1 where table row t is row i's j-th token, so that
    ``gather3 @ dS.reshape(3n, H)`` sums the score gradients per table row.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, p: int, n_heads: int):
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        self.p, self.n = p, len(a)
        T2 = 2 * p
        self.idx3 = np.stack([a, b + p, np.full_like(a, T2)], 1)
        head = np.arange(n_heads)[None, :, None]
        self.flat_ab = ((np.arange(self.n)[:, None, None] * n_heads + head) * T2
                        + self.idx3[:, None, :2]).ravel()
        self.gather3 = np.zeros((T2 + 1, 3 * self.n), np.float32)
        self.gather3[self.idx3.ravel(), np.arange(3 * self.n)] = 1.0


@functools.lru_cache(maxsize=8)
def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    zeros = np.zeros(shape, np.float32)
    zeros.flags.writeable = False  # shared by every caller of this shape
    return zeros


def relu_(x: np.ndarray) -> np.ndarray:
    """ReLU of the float32 array ``x`` in place, as ``np.maximum(x, zeros)`` with an array
    of zeros of x's shape (made once per shape): numpy 2.4 takes its vector loop for two
    arrays but not for an array and the scalar 0 (measured on [529, 512], AMD EPYC: 30
    against 280 us), and the numbers are the same."""
    return np.maximum(x, _zeros(x.shape), out=x)


@dataclass
class Tables:
    """Per-token tables of one set of weights (made once per forward: every row reads
    them)."""

    X: np.ndarray          # [T, d_model] embedding + position per table row
    q_s: np.ndarray        # [H, d_head] the '=' query, times 1/sqrt(d_head)
    k_dir: np.ndarray      # [H, d_model] W_K @ q_s: a table row's score is X @ k_dir
    scores: np.ndarray     # [T, H] X @ k_dir.T
    V: np.ndarray          # [H, T, d_head]
    VO: np.ndarray         # [H, T, d_model] values through W_O
    VO_ab: np.ndarray      # [H * 2p, d_model] VO of the a- and b-token rows
    W_logit: np.ndarray    # [d_mlp, d_vocab_out] = W_out @ W_U


def tables(w: Weights, p: int, cfg: ModelConfig) -> Tables:
    """The per-token tables of ``w`` at modulus/size ``p``."""
    H = cfg.n_heads
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    X = np.empty((2 * p + 1, W_E.shape[1]), np.float32)
    np.add(W_E[:p], W_pos[0], out=X[:p])
    np.add(W_E[:p], W_pos[1], out=X[p:2 * p])
    np.add(W_E[p], W_pos[2], out=X[2 * p])
    q_s = (X[-1] @ w[ATT + "W_Q"]) * np.float32(cfg.d_head ** -0.5)   # [H, d_head]
    # score[t, h] = (X[t] @ W_K[h]) . q_s[h] = X[t] . (W_K[h] @ q_s[h]): no key table
    k_dir = np.matmul(w[ATT + "W_K"], q_s[:, :, None])[:, :, 0]        # [H, d_model]
    V = np.matmul(X, w[ATT + "W_V"])                                   # [H, T, d_head]
    VO = np.matmul(V, w[ATT + "W_O"])                                  # [H, T, d_model]
    # No final LayerNorm: the unembedding is linear in the MLP output, so go through
    # W_logit [d_mlp, d_vocab_out]: fewer flops than post @ W_out when d_vocab_out < d_model.
    W_logit = names.w_logit(w, 0)
    return Tables(X, q_s, k_dir, X @ k_dir.T, V, VO, VO[:, :2 * p].reshape(H * 2 * p, -1), W_logit)


@dataclass
class Saved:
    """Activations of one forward that the backward reads."""

    t: Tables
    P: np.ndarray          # [n, 3, H] attention from '=' to (a, b, '=')
    A: np.ndarray          # [n, H * 2p] attention to the a- and b-token table rows
    resid_mid: np.ndarray  # [n, d_model]
    post: np.ndarray       # [n, d_mlp]

    def head(self, n: int) -> "Saved":
        """The activations of the first ``n`` rows (views): the backward of a forward that
        also ran other rows after them."""
        return Saved(self.t, self.P[:n], self.A[:n], self.resid_mid[:n], self.post[:n])


def forward(w: Weights, rows: Rows, cfg: ModelConfig) -> tuple[np.ndarray, Saved]:
    """Logits at '=' [n, d_vocab_out] float32 and the activations for :func:`backward`."""
    t = tables(w, rows.p, cfg)
    n, H, T2 = rows.n, cfg.n_heads, 2 * rows.p
    S = t.scores[rows.idx3]                                            # [n, 3, H]
    S -= S.max(1, keepdims=True)
    np.exp(S, out=S)
    P = S
    P /= S.sum(1, keepdims=True)
    # Attention to a and b as a dense [n, H, 2p] matrix (two non-zeros per row and head)
    # times the value table: one matmul, where a gather of each row's values would move
    # n * 2 * H * d_model floats and need a scatter-add in the backward.
    A = np.zeros(n * H * T2, np.float32)
    A[rows.flat_ab] = P[:, :2].transpose(0, 2, 1).ravel()
    A = A.reshape(n, H * T2)
    resid_mid = A @ t.VO_ab
    resid_mid += P[:, 2] @ t.VO[:, -1]
    resid_mid += t.X[-1]                                               # x_eq
    post = resid_mid @ w[MLP + "W_in"]
    relu_(post)
    logits = post @ t.W_logit
    logits += resid_mid @ w["unembed.W_U"]
    return logits, Saved(t, P, A, resid_mid, post)


def backward(w: Weights, rows: Rows, s: Saved, dlogits: np.ndarray, grads: Weights,
             cfg: ModelConfig) -> None:
    """Write d(loss)/d(weight) into ``grads[name]`` (overwritten, same shapes as ``w``),
    given ``dlogits`` [n, d_vocab_out] for the rows of the forward that made ``s``."""
    n, H, p = rows.n, cfg.n_heads, rows.p
    T2 = 2 * p
    W_U, W_in, W_out = w["unembed.W_U"], w[MLP + "W_in"], w[MLP + "W_out"]
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    t = s.t
    # unembedding and MLP: logits = resid_mid @ W_U + post @ W_logit, W_logit = W_out @ W_U
    dW_logit = s.post.T @ dlogits
    np.matmul(dW_logit, W_U.T, out=grads[MLP + "W_out"])
    dW_U = np.matmul(s.resid_mid.T, dlogits, out=grads["unembed.W_U"])
    dW_U += W_out.T @ dW_logit
    dpre = dlogits @ t.W_logit.T
    dpre *= s.post > 0                                                 # ReLU's gradient
    np.matmul(s.resid_mid.T, dpre, out=grads[MLP + "W_in"])
    dresid = dpre @ W_in.T                                             # [n, d_model]
    dresid += dlogits @ W_U.T
    # attention from '=': resid_mid = x_eq + sum_j,h P[:, j, h] VO[h, idx_j]
    dP = np.empty((n, 3, H), np.float32)
    dA = dresid @ t.VO_ab.T                                            # [n, H * 2p]
    dP[:, :2] = dA.reshape(-1)[rows.flat_ab].reshape(n, H, 2).transpose(0, 2, 1)
    dP[:, 2] = dresid @ t.VO[:, -1].T
    # softmax over the 3 positions: dS = P * (dP - sum_j P dP)
    dS = dP
    dS -= (dP * s.P).sum(1, keepdims=True)
    dS *= s.P
    dSt = rows.gather3 @ dS.reshape(3 * n, H)                          # [T, H]
    dVO = np.empty_like(t.VO)                                          # [H, T, d_model]
    dVO[:, :T2] = (s.A.T @ dresid).reshape(H, T2, -1)
    dVO[:, T2] = s.P[:, 2].T @ dresid
    # scores = X @ k_dir.T, k_dir[h] = W_K[h] @ q_s[h], q_s = x_eq @ W_Q / sqrt(d_head)
    u = t.X.T @ dSt                                                    # [d_model, H] = d k_dir.T
    np.multiply(u.T[:, :, None], t.q_s[:, None, :], out=grads[ATT + "W_K"])
    dq = np.matmul(W_K.transpose(0, 2, 1), u.T[:, :, None])[:, :, 0]
    dq *= np.float32(cfg.d_head ** -0.5)
    x_eq = t.X[-1]
    np.multiply(x_eq[None, :, None], dq[:, None, :], out=grads[ATT + "W_Q"])
    # VO = V @ W_O, V = X @ W_V
    np.matmul(t.V.transpose(0, 2, 1), dVO, out=grads[ATT + "W_O"])
    dV = np.matmul(dVO, W_O.transpose(0, 2, 1))                        # [H, T, d_head]
    np.matmul(t.X.T, dV, out=grads[ATT + "W_V"])
    dX = np.matmul(dV, W_V.transpose(0, 2, 1)).sum(0)                  # [T, d_model]
    dX += dSt @ t.k_dir
    dX[-1] += dresid.sum(0) + np.matmul(W_Q, dq[:, :, None]).sum(0)[:, 0]
    # X = W_E[token] + W_pos[position]: a-rows and b-rows share the number tokens
    dW_E, dW_pos = grads["embed.W_E"], grads["pos_embed.W_pos"]
    np.add(dX[:p], dX[p:T2], out=dW_E[:p])
    dW_E[p] = dX[T2]
    dX[:p].sum(0, out=dW_pos[0])
    dX[p:T2].sum(0, out=dW_pos[1])
    dW_pos[2] = dX[T2]


def onehot(labels: np.ndarray, d_vocab_out: int) -> np.ndarray:
    """[n, d_vocab_out] float64 one-hot of ``labels`` (made once per run)."""
    out = np.zeros((len(labels), d_vocab_out))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def log_probs(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in float64 as the notebook's loss."""
    x = logits.astype(np.float64)
    x -= x.max(1, keepdims=True)
    x -= np.log(np.exp(x).sum(1, keepdims=True))
    return x


def loss_and_dlogits(logits: np.ndarray, labels_onehot: np.ndarray) -> tuple[float, np.ndarray]:
    """The notebook's loss (mean cross-entropy in float64) and its gradient in float32, with
    float32-subnormal entries set to 0 (see :data:`FLOAT32_TINY`)."""
    logp = log_probs(logits)
    n = len(logits)
    loss = -float(np.vdot(logp, labels_onehot)) / n
    dlogits = np.exp(logp)
    dlogits -= labels_onehot
    dlogits /= n
    dlogits[np.abs(dlogits) < FLOAT32_TINY] = 0.0
    return loss, dlogits.astype(np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose argmax is the label."""
    return float((logits.argmax(1) == labels).mean())


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray,
                      labels_onehot: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (float64) and :func:`accuracy`."""
    loss = -float(np.vdot(log_probs(logits), labels_onehot)) / len(logits)
    return loss, accuracy(logits, labels)
