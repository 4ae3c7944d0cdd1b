"""The notebook's model trained without autograd: a forward that keeps what the backward
needs, and the backward derived by hand.

Which models: one layer, no LayerNorm, relu or gelu, and every bias absent (the notebook
freezes them at zero; ``Trainer`` leaves all-zero frozen biases out of the weights). Any
other model trains through autograd on :func:`grok_engine.fast.last_logits`.

Why: at p=10 one epoch is about a hundred tensor ops on matrices of a few hundred rows,
and autograd's bookkeeping (a graph node per op, gradient accumulation into leaves, the
backward engine's hand-off) costs about as much as the arithmetic. Here the backward is
~35 ops, every weight gradient is written straight into the trainer's flat gradient
(``out=``), and nothing is zeroed or accumulated twice.

The function is :func:`grok_engine.fast.last_logits` (same per-token tables, same
last-position-only MLP), so both paths train the same model; ``tests/engine/
test_one_layer.py`` holds the gradients to autograd's.

Shapes: ``p`` tokens plus '=' (index ``p``); ``T = 2p + 1`` table rows (a-tokens at
position 0, b-tokens at position 1, '=' at position 2); ``n`` rows ``[a, b, =]``; ``H``
heads of ``d_head``; ``d_model``; ``d_mlp``; ``d_vocab_out``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grok_engine.config import ModelConfig

ATT, MLP = "blocks.0.attn.", "blocks.0.mlp."
WEIGHTS = ("embed.W_E", "pos_embed.W_pos", ATT + "W_Q", ATT + "W_K", ATT + "W_V", ATT + "W_O",
           MLP + "W_in", MLP + "W_out", "unembed.W_U")


def supported(cfg: ModelConfig, names: set[str] | frozenset[str]) -> bool:
    """True when the hand-written backward covers this model with exactly these weights."""
    return (cfg.n_layers == 1 and cfg.normalization == "none" and cfg.act_fn in ("relu", "gelu")
            and set(names) == set(WEIGHTS))


class Rows:
    """The index tensors for a set of rows ``[a, b, =]`` into the token tables.

    ``idx3`` [n, 3]: table rows of (a, b, '=') for the attention scores; ``idx2``
    [n, 1, 2]: (a, b) only, for the values ('=' is the same row for all and is handled as
    one vector).
    ``tok``, ``pos`` [T]: the token and position of every table row.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, p: int):
        dev = a.device
        self.p, self.n = p, len(a)
        self.idx3 = torch.stack([a, b + p, torch.full_like(a, 2 * p)], 1).contiguous()
        # (a, b) as columns of the [n, H, 2p] attention matrix over the value table
        self.idx2 = self.idx3[:, None, :2]
        ar = torch.arange(p, device=dev)
        self.tok = torch.cat([ar, ar, torch.tensor([p], device=dev)])
        self.pos = torch.cat([torch.zeros(p, dtype=torch.long, device=dev),
                              torch.ones(p, dtype=torch.long, device=dev),
                              torch.tensor([2], device=dev)])


@dataclass
class Tables:
    """Per-token tables of one set of weights: shared by every set of rows (the trainer
    evaluates the test split after a step and trains on the next epoch's rows with the
    same tables)."""

    X: torch.Tensor          # [T, d_model] embedding + position per table row
    q_s: torch.Tensor        # [H, d_head] the '=' query, times 1/sqrt(d_head)
    k_dir: torch.Tensor      # [H, d_model] W_K @ q_s: a table row's score is X @ k_dir
    scores: torch.Tensor     # [T, H] X @ k_dir.T
    V: torch.Tensor          # [H, T, d_head]
    VO: torch.Tensor         # [H, T, d_model] values through W_O
    VO_ab: torch.Tensor      # [H * 2p, d_model] VO of the a- and b-token rows
    W_logit: torch.Tensor    # [d_mlp, d_vocab_out] = W_out @ W_U


def tables(w: dict[str, torch.Tensor], rows: Rows, cfg: ModelConfig) -> Tables:
    """The per-token tables of ``w`` (``rows`` gives the token and position of each)."""
    H = cfg.n_heads
    X = w["embed.W_E"].index_select(0, rows.tok) + w["pos_embed.W_pos"].index_select(0, rows.pos)
    T2 = X.shape[0] - 1
    q_s = (X[-1] @ w[ATT + "W_Q"]) * cfg.d_head ** -0.5           # [H, d_head]
    # score[t, h] = (X[t] @ W_K[h]) . q_s[h] = X[t] . (W_K[h] @ q_s[h]): no key table
    k_dir = torch.bmm(w[ATT + "W_K"], q_s[:, :, None])[:, :, 0]    # [H, d_model]
    V = X @ w[ATT + "W_V"]                                         # [H, T, d_head]
    VO = torch.bmm(V, w[ATT + "W_O"])                              # [H, T, d_model]
    # No final LayerNorm: the unembedding is linear in the MLP output, so go through
    # W_logit [d_mlp, d_vocab_out]: fewer flops than post @ W_out when d_vocab_out < d_model.
    W_logit = w[MLP + "W_out"] @ w["unembed.W_U"]
    return Tables(X, q_s, k_dir, X @ k_dir.t(), V, VO, VO[:, :T2].reshape(H * T2, -1), W_logit)


@dataclass
class Saved:
    """Activations of one forward that the backward reads."""

    t: Tables
    P: torch.Tensor          # [n, 3, H] attention from '=' to (a, b, '=')
    A: torch.Tensor          # [n, H * 2p] attention to the a- and b-token table rows
    resid_mid: torch.Tensor  # [n, d_model]
    pre: torch.Tensor        # [n, d_mlp]
    post: torch.Tensor       # [n, d_mlp]


def forward(w: dict[str, torch.Tensor], rows: Rows, cfg: ModelConfig,
            tab: Tables | None = None) -> tuple[torch.Tensor, Saved]:
    """Logits at '=' [n, d_vocab_out] and the activations for :func:`backward`.
    ``tab``: :func:`tables` of these same weights, when already made."""
    t = tab if tab is not None else tables(w, rows, cfg)
    n, H = rows.n, cfg.n_heads
    T2 = t.X.shape[0] - 1
    P = torch.softmax(t.scores[rows.idx3], 1)                      # [n, 3, H]
    # Attention to a and b as a dense [n, H, 2p] matrix (two non-zeros per row and head)
    # times the value table: one matmul, where a gather of each row's values would move
    # n * 2 * H * d_model floats and need a scatter-add in the backward.
    A = P.new_zeros(n, H, T2).scatter_(2, rows.idx2.expand(n, H, 2), P[:, :2].transpose(1, 2))
    A = A.view(n, H * T2)
    resid_mid = torch.addmm(t.X[-1], P[:, 2], t.VO[:, -1])         # x_eq + '=' term
    resid_mid.addmm_(A, t.VO_ab)
    pre = resid_mid @ w[MLP + "W_in"]
    post = F.relu(pre) if cfg.act_fn == "relu" else F.gelu(pre)
    logits = torch.addmm(resid_mid @ w["unembed.W_U"], post, t.W_logit)
    return logits, Saved(t, P, A, resid_mid, pre, post)


def backward(w: dict[str, torch.Tensor], rows: Rows, s: Saved, dlogits: torch.Tensor,
             grads: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Write d(loss)/d(weight) into ``grads[name]`` (overwritten, same shapes as ``w``),
    given ``dlogits`` [n, d_vocab_out] for the rows of the forward that made ``s``."""
    n, H = rows.n, cfg.n_heads
    T = s.t.X.shape[0]
    W_U, W_in, W_out = w["unembed.W_U"], w[MLP + "W_in"], w[MLP + "W_out"]
    W_Q, W_K, W_V, W_O = (w[ATT + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
    # unembedding and MLP: logits = resid_mid @ W_U + post @ W_logit, W_logit = W_out @ W_U
    dW_logit = s.post.t() @ dlogits
    torch.mm(dW_logit, W_U.t(), out=grads[MLP + "W_out"])
    torch.addmm(s.resid_mid.t() @ dlogits, W_out.t(), dW_logit, out=grads["unembed.W_U"])
    dpost = dlogits @ s.t.W_logit.t()
    if cfg.act_fn == "relu":
        dpre = torch.ops.aten.threshold_backward(dpost, s.post, 0)
    else:
        dpre = torch.ops.aten.gelu_backward(dpost, s.pre)
    torch.mm(s.resid_mid.t(), dpre, out=grads[MLP + "W_in"])
    dresid = torch.addmm(dlogits @ W_U.t(), dpre, W_in.t())        # [n, d_model]
    # attention from '=': resid_mid = x_eq + sum_j,h P[:, j, h] VO[h, idx_j]
    dA = (dresid @ s.t.VO_ab.t()).view(n, H, T - 1)
    dP = torch.cat([dA.gather(2, rows.idx2.expand(n, H, 2)).transpose(1, 2),
                    (dresid @ s.t.VO[:, -1].t())[:, None]], 1)       # [n, 3, H]
    dSg = torch.ops.aten._softmax_backward_data(dP, s.P, 1, dP.dtype)
    dSt = dresid.new_zeros(T, H).index_add_(0, rows.idx3.view(-1), dSg.view(-1, H))  # [T, H]
    dVO = torch.cat([(s.A.t() @ dresid).view(H, T - 1, -1),
                     (s.P[:, 2].t() @ dresid)[:, None]], 1)       # [H, T, d_model]
    # scores = X @ k_dir.T, k_dir[h] = W_K[h] @ q_s[h], q_s = x_eq @ W_Q / sqrt(d_head)
    u = s.t.X.t() @ dSt                                              # [d_model, H] = d k_dir.T
    torch.mul(u.t()[:, :, None], s.t.q_s[:, None, :], out=grads[ATT + "W_K"])
    dq = torch.bmm(W_K.transpose(1, 2), u.t()[:, :, None])[:, :, 0] * cfg.d_head ** -0.5
    x_eq = s.t.X[-1]
    torch.mul(x_eq[None, :, None], dq[:, None, :], out=grads[ATT + "W_Q"])
    # VO = V @ W_O, V = X @ W_V
    torch.bmm(s.t.V.transpose(1, 2), dVO, out=grads[ATT + "W_O"])
    dV = torch.bmm(dVO, W_O.transpose(1, 2))                       # [H, T, d_head]
    torch.bmm(s.t.X.t().expand(H, -1, -1), dV, out=grads[ATT + "W_V"])
    dX = torch.addmm(torch.bmm(dV, W_V.transpose(1, 2)).sum(0), dSt, s.t.k_dir)  # [T, d_model]
    dX[-1] += dresid.sum(0) + torch.bmm(W_Q, dq[:, :, None]).sum(0)[:, 0]
    # X = W_E[tok] + W_pos[pos]
    grads["embed.W_E"].zero_().index_add_(0, rows.tok, dX)
    grads["pos_embed.W_pos"].zero_().index_add_(0, rows.pos, dX)


def loss_and_dlogits(logits: torch.Tensor, labels: torch.Tensor,
                     neg_onehot_over_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's loss (mean cross-entropy in float64) and its gradient in float32.

    ``neg_onehot_over_n`` [n, d_vocab_out] float64: -onehot(labels) / n, the gradient of
    the loss with respect to the log-probabilities (made once per run).
    """
    log_probs = F.log_softmax(logits.to(torch.float64), 1)
    loss = F.nll_loss(log_probs, labels)
    dlog = torch.ops.aten._log_softmax_backward_data(neg_onehot_over_n, log_probs, 1, torch.float64)
    return loss, dlog.to(torch.float32)


def neg_onehot_over_n(labels: torch.Tensor, d_vocab_out: int) -> torch.Tensor:
    """-onehot(labels) / n in float64, [n, d_vocab_out]."""
    return F.one_hot(labels, d_vocab_out).to(torch.float64) / -len(labels)
