"""The notebook's model trained on the CPU without autograd or torch: the numpy forward
over every pair, and the loss (the backward derived by hand is
:mod:`grok_engine.one_layer_backward`; :mod:`grok_engine.numpy_pass` runs the two).

Which models: one layer, no LayerNorm, ReLU, every bias absent (the notebook freezes them
at zero; ``Trainer`` leaves all-zero frozen biases out of the weights), on the CPU. Any
other model, and any model on a GPU, trains through autograd on
:func:`grok_engine.fast.last_logits`.

Why numpy: at p=10 an epoch is about a hundred ops on matrices of a few hundred rows.
A torch op costs ~5-8 us of dispatch before any arithmetic and autograd adds a graph node
per op; a numpy op costs ~1-2 us. The backward is ~50 ops, each weight gradient is
written straight into the trainer's flat gradient (numpy views of the torch tensor that
AdamW steps), and nothing is zeroed or accumulated twice.

The function is :func:`grok_engine.fast.last_logits`'s (the same per-token tables, the
same last-position-only MLP), so both paths train the same model; ``tests/engine/
test_one_layer.py`` holds the loss and gradients to autograd's.

The forward (:func:`grid_forward`) runs every pair (a, b) in the grid order a * p + b, the
MLP's pre-activation from tables: with the attention from '=' to (a, b, '=') summing to 1
per head, pre = c + sum_h P[h, a] A[h, a] + P[h, b] B[h, b], where A and B are the value
rows of a and b less the '=' row, through W_O and W_in (and c = x_eq @ W_in plus every
head's '=' row). The tables cost one matmul of (p + 2) H rows through W_in (a b row is its
token's a row moved by the position embedding: one more row per head), and then the sum
is 2H + 1 multiply-adds per pair and unit (:func:`grok_engine.table_mix.mix`, compiled),
where resid_mid @ W_in would cost d_model (4x the work at the notebook's shape). A run's
train and test rows are a split of the grid, so one forward gives the test metrics and
the train rows' logits and activations.

Shapes: ``p`` tokens plus '=' (index ``p``); ``T = 2p + 1`` table rows (a-tokens at
position 0, b-tokens at position 1, '=' at position 2); ``n`` rows ``[a, b, =]``; ``H``
heads of ``d_head``; ``d_model``; ``d_mlp``; ``d_vocab_out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


def max3(x: np.ndarray) -> np.ndarray:
    """x.max(-2) of x [..., 3, H], position by position: (x0 max x1) max x2, numpy's
    reduction's numbers in a third of its time over a short strided axis."""
    out = np.maximum(x[..., 0, :], x[..., 1, :])
    return np.maximum(out, x[..., 2, :], out=out)


def sum3(x: np.ndarray) -> np.ndarray:
    """x.sum(-2) of x [..., 3, H], added in numpy's order: (x0 + x1) + x2."""
    out = np.add(x[..., 0, :], x[..., 1, :])
    out += x[..., 2, :]
    return out


def padded_width(d_vocab_out: int) -> int:
    """The logits' width in the numpy path: d_vocab_out rounded up to a multiple of 8. BLAS
    runs the matmuls with d_vocab_out columns faster on a multiple of its vector width, and
    zero columns add nothing: measured at p=23 (23 -> 24, AMD EPYC, one thread) per member
    and epoch, post @ W_logit 225 -> 169 us, post.T @ dlogits 120 -> 91, W_out @ W_U 55 -> 41;
    at p=10 (20 -> 24) no change."""
    return -(-d_vocab_out // 8) * 8


@dataclass
class Tables:
    """Per-token tables of M members' weights (made once per forward: every row reads them),
    ``[M, ...]``. ``W_U`` and ``W_logit`` have :func:`padded_width` columns, zero past
    d_vocab_out."""

    X: np.ndarray          # [M, T, d_model] embedding + position per table row
    q_s: np.ndarray        # [M, H, d_head] the '=' query, times 1/sqrt(d_head)
    k_dir: np.ndarray      # [M, H, d_model] W_K @ q_s: a table row's score is X @ k_dir
    scores: np.ndarray     # [M, T, H] X @ k_dir.T
    V: np.ndarray          # [M, H, T, d_head]
    VO: np.ndarray         # [M, H, T, d_model] values through W_O
    W_U: np.ndarray        # [M, d_model, padded] the unembedding, zero-padded
    W_logit: np.ndarray    # [M, d_mlp, padded] = W_out @ W_U


def tables(w: Weights, p: int, cfg: ModelConfig, W_U_padded: np.ndarray | None = None) -> Tables:
    """The per-token tables of M members' weights ``w`` ([M, ...] each) at modulus/size ``p``;
    the padded W_U in ``W_U_padded`` [M, d_model, padded] (zero past d_vocab_out) when given."""
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    M = W_E.shape[0]
    X = np.empty((M, 2 * p + 1, W_E.shape[2]), np.float32)
    np.add(W_E[:, :p], W_pos[:, 0:1], out=X[:, :p])
    np.add(W_E[:, :p], W_pos[:, 1:2], out=X[:, p:2 * p])
    np.add(W_E[:, p], W_pos[:, 2], out=X[:, 2 * p])
    q_s = np.matmul(X[:, None, -1:], w[ATT + "W_Q"])[:, :, 0] * np.float32(cfg.d_head ** -0.5)
    # score[t, h] = (X[t] @ W_K[h]) . q_s[h] = X[t] . (W_K[h] @ q_s[h]): no key table
    k_dir = np.matmul(w[ATT + "W_K"], q_s[:, :, :, None])[:, :, :, 0]
    V = np.matmul(X[:, None], w[ATT + "W_V"])
    VO = np.matmul(V, w[ATT + "W_O"])
    W_U = w[names.W_U]
    if W_U_padded is None:
        W_U_padded = np.zeros((*W_U.shape[:2], padded_width(W_U.shape[2])), np.float32)
    W_U_padded[:, :, :W_U.shape[2]] = W_U
    # No final LayerNorm: the unembedding is linear in the MLP output, so go through
    # W_logit [d_mlp, d_vocab_out]: fewer flops than post @ W_out when d_vocab_out < d_model.
    W_logit = names.w_logit({**w, names.W_U: W_U_padded}, 0)
    scores = np.matmul(X, k_dir.transpose(0, 2, 1))
    return Tables(X, q_s, k_dir, scores, V, VO, W_U_padded, W_logit)


class GridBuffers:
    """What :func:`grid_forward` writes, for M members at modulus/size ``p``, allocated once
    (a fresh post alone is 8.7 MB for 8 members at p=23, and its allocation cost 5% of the
    forward): the next forward into the same buffers overwrites the last one's Grid.

    ``P`` [M, p, p, 3, H] the attention from '=' to (a, b, '=');
    ``logits`` [M, p * p, padded_width(d_vocab_out)] and ``W_U`` (zero-padded, for
    :func:`tables`) [M, d_model, padded_width(d_vocab_out)]; ``resid_mid`` and ``post`` [M, p, p, ...], or with
    ``keep_activations=False`` one member's [1, p, p, ...], reused by each member in turn
    (for a caller that reads them in grid_forward's ``after``: a pack's 8.7 MB of post at
    p=23 then stays a 1.1 MB buffer in the cache); per member, reused: ``rows`` [H, p+2,
    d_model] and ``VOW`` [H, p+2, d_mlp] (:func:`_pre_tables`), and for each width E
    (d_model, d_mlp) the b table ``B`` [H, p, E].
    """

    def __init__(self, M: int, p: int, cfg: ModelConfig, d_vocab_out: int, keep_activations: bool = True):
        H = cfg.n_heads
        self.keep_activations = keep_activations
        self.P = np.empty((M, p, p, 3, H), np.float32)
        kept = M if keep_activations else 1
        self.resid_mid = np.empty((kept, p, p, cfg.d_model), np.float32)
        self.post = np.empty((kept, p, p, cfg.d_mlp), np.float32)
        self.d_vocab_out = d_vocab_out
        self.logits = np.empty((M, p * p, padded_width(d_vocab_out)), np.float32)
        self.W_U = np.zeros((M, cfg.d_model, padded_width(d_vocab_out)), np.float32)
        self.rows = np.empty((H, p + 2, cfg.d_model), np.float32)
        self.VOW = np.empty((H, p + 2, cfg.d_mlp), np.float32)
        self.B = {E: np.empty((H, p, E), np.float32) for E in (cfg.d_model, cfg.d_mlp)}


@dataclass
class Grid:
    """One forward of M members over every pair (a, b), in the grid order c = a * p + b (a
    run's train and test rows are a split of it): what the metrics read and the backward's
    attention part reads. Views of a :class:`GridBuffers`."""

    t: Tables
    P: np.ndarray          # [M, p*p, 3, H] attention from '=' to (a, b, '=')
    resid_mid: np.ndarray | None  # [M, p*p, d_model]; None unless the buffers keep them
    post: np.ndarray | None       # [M, p*p, d_mlp]; likewise
    logits: np.ndarray     # [M, p*p, d_vocab_out] (a view of the padded buffer)


def _pre_tables(VO: np.ndarray, VO_shift: np.ndarray, W_in: np.ndarray, xW: np.ndarray,
                b: "GridBuffers") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One member's tables of the MLP's pre-activation for :func:`grok_engine.table_mix.mix`:
    (A, B, c) with A [H, p + 2, d_mlp] whose first p rows per head are (VO[:, a] -
    VO[:, '=']) @ W_in (the rest: the tables' working rows), B = A + VO_shift @ W_in (a b row is
    its token's a row moved by the position embedding: VO_shift [H, d_model] is
    (W_pos[1] - W_pos[0]) @ W_V @ W_O per head) and c = xW + sum_h VO[h, '='] @ W_in: one
    matmul of (p + 2) H rows through W_in instead of the (2p + 1) H of every table row
    (with K = H + 1 in the BLAS form of the mix that table_mix replaced: a pack of 8 at p=23
    took 64 against 69 ms per epoch, AMD EPYC Zen 1, one thread)."""
    p2 = VO.shape[1] - 1
    p = p2 // 2
    rows = b.rows
    np.subtract(VO[:, :p], VO[:, p2:], out=rows[:, :p])
    rows[:, p] = VO[:, p2]
    rows[:, p + 1] = VO_shift
    F = W_in.shape[1]
    VOW = np.matmul(rows.reshape(-1, rows.shape[-1]), W_in, out=b.VOW.reshape(-1, F)).reshape(b.VOW.shape)
    B = np.add(VOW[:, :p], VOW[:, p + 1:], out=b.B[F])
    return VOW, B, xW + VOW[:, p].sum(0)


def _resid_tables(VO: np.ndarray, x_eq: np.ndarray, b: "GridBuffers") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One member's tables of resid_mid for :func:`grok_engine.table_mix.mix`: (A, B, c), the a and b rows of
    VO [H, T, d_model] less its '=' row, and c = x_eq + sum_h VO[h, '=']."""
    p2 = VO.shape[1] - 1
    p = p2 // 2
    eq = VO[:, p2:]
    A = VO[:, :p] - eq
    B = np.subtract(VO[:, p:p2], eq, out=b.B[VO.shape[-1]])
    return A, B, x_eq + eq[:, 0].sum(0)


def grid_forward(w: Weights, p: int, cfg: ModelConfig, buffers: GridBuffers | None = None,
                 after: Callable[[int, Tables, np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> Grid:
    """M members' forward ([M, ...] weights) over every pair, into ``buffers`` (fresh ones
    when none are given). The solo trainer runs it with M = 1, a pack with its members:
    each member's arithmetic is the same ops on the same shapes (the MLP member by member),
    so a member's numbers are its solo run's to the last bit on one BLAS thread.

    ``after(m, tables, resid_mid, post, logits)``, when given, is called with member m's
    grid rows ([p*p, ...]; logits [p*p, d_vocab_out]) as soon as they are made, while they
    are in the cache (the MLP part of the backward)."""
    M = w[names.W_U].shape[0]
    b = buffers if buffers is not None else GridBuffers(M, p, cfg, w[names.W_U].shape[-1])
    t = tables(w, p, cfg, b.W_U)
    H, T2, D, F = cfg.n_heads, 2 * p, cfg.d_model, cfg.d_mlp
    V = b.d_vocab_out
    S = b.P
    S[:, :, :, 0] = t.scores[:, :p, None]
    S[:, :, :, 1] = t.scores[:, None, p:T2]
    S[:, :, :, 2] = t.scores[:, None, None, T2]
    S -= max3(S)[..., None, :]
    np.exp(S, out=S)
    S /= sum3(S)[..., None, :]
    W_in = w[MLP + "W_in"]
    x_eq = t.X[:, -1]
    xW = np.matmul(x_eq[:, None], W_in)[:, 0]                          # [M, d_mlp]
    W_pos = w[names.W_POS]
    VO_shift = np.matmul(np.matmul((W_pos[:, 1] - W_pos[:, 0])[:, None, None], w[ATT + "W_V"]),
                         w[ATT + "W_O"])[:, :, 0]                      # [M, H, d_model]
    from grok_engine.table_mix import mix  # numba: loaded on the first forward, not at import

    for m in range(M):  # member by member: a member's post stays in the cache
        k = m if b.keep_activations else 0
        r = mix(S[m], *_resid_tables(t.VO[m], x_eq[m], b), False, b.resid_mid[k]).reshape(-1, D)
        h = mix(S[m], *_pre_tables(t.VO[m], VO_shift[m], W_in[m], xW[m], b), True, b.post[k]).reshape(-1, F)
        out = np.matmul(h, t.W_logit[m], out=b.logits[m])
        out += r @ t.W_U[m]
        if after is not None:
            after(m, t, r, h, out[:, :V])
    n = p * p
    if not b.keep_activations:
        return Grid(t, S.reshape(M, n, 3, H), None, None, b.logits[..., :V])
    return Grid(t, S.reshape(M, n, 3, H), b.resid_mid.reshape(M, n, D), b.post.reshape(M, n, F), b.logits[..., :V])


def take_rows(x: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x[rows] (into ``out`` when given). mode="clip" because the rows are valid by
    construction: numpy's default mode checks them through a buffer, 51 against 19 us for
    [265, 512] of [529, 512]."""
    return np.take(x, rows, axis=0, out=out, mode="clip")


def one_member(w: Weights) -> Weights:
    """One model's weights as a stack of one member (views with a leading axis of 1)."""
    return {name: v[None] for name, v in w.items()}


def onehot(labels: np.ndarray, d_vocab_out: int) -> np.ndarray:
    """[n, d_vocab_out] float64 one-hot of ``labels`` (made once per run)."""
    out = np.zeros((len(labels), d_vocab_out))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def log_probs(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """log_softmax over the last axis of [n, V], in float64 as the notebook's loss (into
    ``out`` [n, V] float64 when given). Each row's ops are its own, so a row's bits do not
    depend on which other rows are in ``logits``."""
    x = logits.astype(np.float64) if out is None else out
    if out is not None:
        np.copyto(x, logits)
    x -= x.max(1, keepdims=True)
    x -= np.log(np.exp(x).sum(1, keepdims=True))
    return x


def dlogits_of(logp: np.ndarray, labels_onehot: np.ndarray) -> np.ndarray:
    """The gradient of the mean cross-entropy of n rows from their :func:`log_probs`
    [n, V], in float32, with float32-subnormal entries set to 0 (see :data:`FLOAT32_TINY`)."""
    dlogits = np.exp(logp)
    dlogits -= labels_onehot
    dlogits /= len(logp)
    dlogits[np.abs(dlogits) < FLOAT32_TINY] = 0.0
    return dlogits.astype(np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose argmax is the label."""
    return float((logits.argmax(1) == labels).mean())
