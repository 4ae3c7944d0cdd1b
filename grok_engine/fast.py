"""The training forward: last-position logits with the work a grokking model really needs.

Why this is fast (and still the same function as ``HookedGrokTransformer``):

* The loss reads only the last position, so the final layer computes its query, its MLP
  and the unembedding for position 2 alone (the notebook's model runs all three).
* In layer 0 the residual stream at a position is ``W_E[token] + W_pos[pos]``: a key or
  value at position ``i`` depends only on the token there. So keys, values (already
  multiplied by ``W_O``) and attention scores are computed once per *token* (tables of
  ``p`` rows) and gathered per pair, instead of once per (pair, position). The '=' query is
  the same for every row: one vector per head.

For ``n_layers == 1`` (the notebook's model) the per-row work is then a 3-way softmax per
head, a weighted sum of three gathered vectors, and the MLP on one position. Deeper
models run layers 0..L-2 on every position (from the same token tables) and the last
layer on position 2 only.

All functions are pure: a dict of HookedTransformer-format weights in, tensors out. A bias
missing from the dict counts as zero (the trainer leaves out the notebook's frozen, all-zero
biases: adding zeros is exact, but costs an op and an autograd node each).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from grok_engine import param_names as names
from grok_engine.config import ModelConfig


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def _ln(w: dict[str, torch.Tensor], name: str, x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    if cfg.normalization == "LN":
        return layer_norm(x, w[name + ".w"], w[name + ".b"])
    return x


def _plus(x: torch.Tensor, w: dict[str, torch.Tensor], name: str,
          shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """x + w[name] (reshaped), or x when the bias is absent (zero)."""
    bias = w.get(name)
    if bias is None:
        return x
    return x + (bias.reshape(shape) if shape is not None else bias)


def _act(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    return F.relu(x) if cfg.act_fn == "relu" else F.gelu(x)


def _mlp_and_unembed(w: dict[str, torch.Tensor], layer: int, resid_mid: torch.Tensor,
                     cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """resid_mid [n, d_model] at the last position -> (logits [n, d_vocab_out],
    pre [n, d_mlp], post [n, d_mlp])"""
    pre = names.mlp(layer)
    hidden_pre = _plus(_ln(w, f"{names.block(layer)}ln2", resid_mid, cfg) @ w[pre + "W_in"], w, pre + "b_in")
    hidden = _act(hidden_pre, cfg)
    W_U = w[names.W_U]
    if cfg.normalization == "LN":
        resid_post = _plus(resid_mid + hidden @ w[pre + "W_out"], w, pre + "b_out")
        return _plus(layer_norm(resid_post, w["ln_final.w"], w["ln_final.b"]) @ W_U, w, names.B_U), hidden_pre, hidden
    # Without a final LayerNorm the unembedding is linear in the MLP output, so go through
    # W_logit = W_out @ W_U [d_mlp, d_vocab_out]: d_vocab_out is often far below d_model.
    W_logit = names.w_logit(w, layer)
    logits = resid_mid @ W_U + hidden @ W_logit
    if pre + "b_out" in w:
        logits = logits + w[pre + "b_out"] @ W_U
    return _plus(logits, w, names.B_U), hidden_pre, hidden


@dataclass
class OneLayerTables:
    """Layer 0's per-token tables of the 1-layer model (rows: the p a-tokens at position 0,
    the p b-tokens at position 1, then '='): ``x`` [2p+1, d_model] the residual stream
    (normalised when the model has LayerNorm), ``scores`` [2p+1, head] each row's
    attention score from '=' (scaled), ``vo`` [2p+1, head, d_model] each row's value
    through W_O."""

    p: int
    resid_pre: torch.Tensor
    x: torch.Tensor
    scores: torch.Tensor
    vo: torch.Tensor


def _one_layer_tables(w: dict[str, torch.Tensor], cfg: ModelConfig) -> OneLayerTables:
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    p = W_E.shape[0] - 1  # the '=' token is the last of the vocabulary
    H, D, Dh = cfg.n_heads, cfg.d_model, cfg.d_head
    att = "blocks.0.attn."
    resid_pre = torch.cat([W_E[:p] + W_pos[0], W_E[:p] + W_pos[1], (W_E[p] + W_pos[2])[None]])
    x = _ln(w, "blocks.0.ln1", resid_pre, cfg)  # [2p+1, d_model]: a-tokens, b-tokens, '='
    # [d_model, head*d_head] so that each projection is one matmul over the token table
    q = _plus(x[-1] @ w[att + "W_Q"].transpose(0, 1).reshape(D, H * Dh), w, att + "b_Q", (-1,))
    k = _plus(x @ w[att + "W_K"].transpose(0, 1).reshape(D, H * Dh), w, att + "b_K", (-1,))
    v = _plus(x @ w[att + "W_V"].transpose(0, 1).reshape(D, H * Dh), w, att + "b_V", (-1,))
    scores = (k.view(-1, H, Dh) * q.view(H, Dh)).sum(-1) / Dh ** 0.5  # [2p+1, head]
    vo = torch.bmm(v.view(-1, H, Dh).transpose(0, 1), w[att + "W_O"]).transpose(0, 1)  # [2p+1, head, d_model]
    return OneLayerTables(p, resid_pre, x, scores, vo)


def _pattern(t: OneLayerTables, a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Attention from '=' to (a, b, '=') with the positions along ``dim``: [n, head, 3]
    (the hooked model's layout), or [n, 3, head] with ``dim=1`` (a softmax over dim 1 of
    that is 2x faster than over a last dim of 3)."""
    s = t.scores
    return torch.softmax(torch.stack([s.index_select(0, a), s.index_select(0, b + t.p),
                                      s[-1].expand(len(a), -1)], dim), dim)


def _attn_resid_mid(w: dict[str, torch.Tensor], t: OneLayerTables, pattern: torch.Tensor,
                    a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """resid_mid at '=' [n, d_model] from the tables and the pattern."""
    p, vo = t.p, t.vo
    attn_out = (weighted_rows(pattern[..., 0], vo[:p], token_groups(a, p))
                + weighted_rows(pattern[..., 1], vo[p:2 * p], token_groups(b, p)))
    attn_out = _plus(attn_out + pattern[..., 2] @ vo[-1], w, "blocks.0.attn.b_O")
    return t.resid_pre[-1] + attn_out


def _one_layer_resid_mid(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                         cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's 1-layer model at '=' from per-token tables: (resid_mid [n, d_model],
    attention pattern from '=' [n, head, 3])."""
    t = _one_layer_tables(w, cfg)
    pattern = _pattern(t, a, b)
    return _attn_resid_mid(w, t, pattern, a, b), pattern


@dataclass
class TokenGroups:
    """The rows of a token vector grouped by token, each group padded to the largest: the
    layout :func:`weighted_rows` reads. ``slot`` [n]: row i's place ``token * L + rank``
    in the padded [p * L] layout; ``pad_rows`` [p * L]: the row in each place, ``n`` (a
    zero row) where the group is shorter."""

    p: int
    L: int
    slot: torch.Tensor
    pad_rows: torch.Tensor


_GROUPS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def token_groups(tokens: torch.Tensor, p: int) -> TokenGroups:
    """:class:`TokenGroups` of ``tokens`` [n] (values in 0..p-1), made once per tensor: the
    trainer passes the same train and test tensors every epoch (one host sync, for L, when
    the tensor is first seen)."""
    cached = _GROUPS.get(tokens)
    if cached is not None and cached.p == p:
        return cached
    n = len(tokens)
    order = torch.argsort(tokens, stable=True)
    counts = torch.bincount(tokens, minlength=p)
    L = int(counts.max().item()) if n else 0
    starts = torch.cumsum(counts, 0) - counts
    sorted_tokens = tokens[order]
    slot = torch.empty_like(tokens)
    slot[order] = sorted_tokens * L + (torch.arange(n, device=tokens.device) - starts[sorted_tokens])
    pad_rows = torch.full((p * L,), n, dtype=tokens.dtype, device=tokens.device)
    pad_rows[slot] = torch.arange(n, device=tokens.device)
    groups = TokenGroups(p, L, slot, pad_rows)
    _GROUPS[tokens] = groups
    return groups


def weighted_rows(weights: torch.Tensor, table: torch.Tensor, groups: TokenGroups) -> torch.Tensor:
    """``sum_h weights[i, h] * table[token_i, h]`` for every row i: [n, H], [p, H, D] -> [n, D].

    The attention of '=' to one position: each row reads its token's value (through W_O) of
    every head. Gathering ``table[token]`` would move n * H * D floats forward and scatter
    as many back; grouping the rows by token instead makes it one batched matmul
    [p, L, H] @ [p, H, D] between gathers of n * H weights and n * D outputs (p=113, 3830
    rows: 4x less memory traffic each way, and no scatter-add into the table).
    """
    p, H, D = table.shape
    padded = torch.cat([weights, weights.new_zeros(1, H)]).index_select(0, groups.pad_rows)
    out = torch.bmm(padded.view(p, groups.L, H), table)                # [p, L, D]
    return out.view(p * groups.L, D).index_select(0, groups.slot)


def _attention(w: dict[str, torch.Tensor], layer: int, x: torch.Tensor, cfg: ModelConfig,
               last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x [n, pos, d_model] (normalised) -> (attn_out [n, pos or 1, d_model],
    pattern [n, head, pos or 1, pos]), causal."""
    att = f"blocks.{layer}.attn."
    xq = x[:, -1:] if last_only else x
    q = _plus(torch.einsum("npd,hde->nphe", xq, w[att + "W_Q"]), w, att + "b_Q")
    k = _plus(torch.einsum("npd,hde->nphe", x, w[att + "W_K"]), w, att + "b_K")
    v = _plus(torch.einsum("npd,hde->nphe", x, w[att + "W_V"]), w, att + "b_V")
    scores = torch.einsum("nqhe,nkhe->nhqk", q, k) / cfg.d_head ** 0.5
    if not last_only:
        n_pos = x.shape[1]
        mask = torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device))
        scores = scores.masked_fill(~mask, float("-inf"))
    pattern = torch.softmax(scores, -1)
    z = torch.einsum("nhqk,nkhe->nqhe", pattern, v)
    return _plus(torch.einsum("nqhe,hed->nqd", z, w[att + "W_O"]), w, att + "b_O"), pattern


def _deep_resid_mid(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                    cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Any depth: layers 0..L-2 on every position, the last on position 2 only.
    Returns (resid_mid [n, d_model], last layer's pattern from '=' [n, head, 3])."""
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    tokens = torch.stack([a, b, torch.full_like(a, W_E.shape[0] - 1)], 1)
    resid = W_E[tokens] + W_pos  # [n, 3, d_model]
    last = cfg.n_layers - 1
    for layer in range(last):
        pre = f"blocks.{layer}."
        resid = resid + _attention(w, layer, _ln(w, pre + "ln1", resid, cfg), cfg, last_only=False)[0]
        hidden = _act(_plus(_ln(w, pre + "ln2", resid, cfg) @ w[pre + "mlp.W_in"], w, pre + "mlp.b_in"), cfg)
        resid = _plus(resid + hidden @ w[pre + "mlp.W_out"], w, pre + "mlp.b_out")
    x = _ln(w, f"blocks.{last}.ln1", resid, cfg)
    attn_out, pattern = _attention(w, last, x, cfg, last_only=True)
    return resid[:, -1] + attn_out[:, 0], pattern[:, :, 0]


@dataclass
class LastPosition:
    """The last layer's activations at '=' for every row: the hooked model's
    ``logits[:, -1]``, ``blocks.L.attn.hook_pattern[:, :, -1]`` [n, head, 3],
    ``blocks.L.hook_resid_mid[:, -1]``, ``blocks.L.mlp.hook_pre[:, -1]`` and ``hook_post[:, -1]``."""

    logits: torch.Tensor
    pattern: torch.Tensor
    resid_mid: torch.Tensor
    pre: torch.Tensor
    post: torch.Tensor


def last_position(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                  cfg: ModelConfig) -> LastPosition:
    """Everything the analyses read at '=' without running (or caching) the other positions
    of the last layer."""
    if cfg.n_layers == 1:
        resid_mid, pattern = _one_layer_resid_mid(w, a, b, cfg)
    else:
        resid_mid, pattern = _deep_resid_mid(w, a, b, cfg)
    logits, pre, post = _mlp_and_unembed(w, cfg.n_layers - 1, resid_mid, cfg)
    return LastPosition(logits, pattern, resid_mid, pre, post)


def last_mlp_post(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                  cfg: ModelConfig) -> torch.Tensor:
    """The last layer's ``mlp.hook_post`` at '=' [n, d_mlp], and nothing after it (no
    unembedding: half the work of :func:`last_position` at p=113, for the probe's float64
    pass)."""
    resid_mid = (_one_layer_resid_mid if cfg.n_layers == 1 else _deep_resid_mid)(w, a, b, cfg)[0]
    pre = f"blocks.{cfg.n_layers - 1}."
    hidden_pre = _plus(_ln(w, pre + "ln2", resid_mid, cfg) @ w[pre + "mlp.W_in"], w, pre + "mlp.b_in")
    return _act(hidden_pre, cfg)


def last_activations(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                     cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits [n, d_vocab_out], resid_mid [n, d_model], post [n, d_mlp]) at '='."""
    out = last_position(w, a, b, cfg)
    return out.logits, out.resid_mid, out.post


def last_logits(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                cfg: ModelConfig) -> torch.Tensor:
    """Logits at the '=' position for the rows ``[a, b, =]``.

    w: HookedTransformer-format weights; a, b: [n] int64 tokens on w's device.
    Returns [n, d_vocab_out], equal (to float tolerance) to
    ``HookedGrokTransformer(...)(tokens)[:, -1]``.
    """
    return last_activations(w, a, b, cfg)[0]


@dataclass
class TokenBags:
    """Each row's terms of the 1-layer model's ``resid_mid`` at '=' as indices into one
    stacked table: ``idx`` [n, 3 * head + 1], entry ``j * head + h`` the row of (token at
    position j, head h) in the [(2p+1) * head] rows of ``vo.reshape(-1, d_model)``, and the last
    entry the constant row after them ('=' itself plus b_O); ``ones`` [n, 1], that
    constant's weight."""

    a: torch.Tensor
    b: torch.Tensor
    p: int
    idx: torch.Tensor
    ones: torch.Tensor


_BAGS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def token_bags(a: torch.Tensor, b: torch.Tensor, p: int, n_heads: int) -> TokenBags:
    """:class:`TokenBags` of the rows ``[a, b, =]`` (made once per pair of tensors: the
    trainer passes the same train and test tensors every epoch)."""
    cached = _BAGS.get(a)
    if cached is not None and cached.b is b and cached.p == p and cached.idx.shape[1] == 3 * n_heads + 1:
        return cached
    h = torch.arange(n_heads, device=a.device)
    idx = torch.empty(len(a), 3 * n_heads + 1, dtype=torch.int64, device=a.device)
    idx[:, 0:n_heads] = a[:, None] * n_heads + h
    idx[:, n_heads:2 * n_heads] = (b[:, None] + p) * n_heads + h
    idx[:, 2 * n_heads:3 * n_heads] = 2 * p * n_heads + h
    idx[:, -1] = (2 * p + 1) * n_heads
    bags = TokenBags(a, b, p, idx, torch.ones(len(a), 1, device=a.device))
    _BAGS[a] = bags
    return bags


def through_tables(cfg: ModelConfig) -> bool:
    """Whether :func:`eval_logits` takes the projected-table path: the 1-layer model
    without LayerNorm (``resid_mid`` at '=' is then linear in the per-token tables)."""
    return cfg.n_layers == 1 and cfg.normalization != "LN"


def eval_logits(w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                cfg: ModelConfig) -> torch.Tensor:
    """:func:`last_logits` for rows that need no backward (the trainer's test rows): the
    same function, other rounding (float32 round-off, ~2e-7 on the logits). Run it under
    ``torch.inference_mode``.

    In the 1-layer model without LayerNorm, ``resid_mid`` at '=' is the constant
    ``x_eq + b_O`` plus, per head, the three values ``vo[token_j, h]`` weighted by the
    attention. So ``resid_mid @ [W_in | W_U]`` is the same weighted sum over the token
    tables projected once: a [(2p+1) * head + 1, d_mlp + d_vocab_out] table, 13 rows per
    row summed by ``embedding_bag``. At p=113 that replaces the [8939, 128] @ [128, 625]
    matmul of the test rows (715M multiply-adds) by one of the 909 table rows (73M) and
    the bag's 13 row reads per row: the test forward went from 48 to 33 ms (AMD EPYC, 2
    threads, medians of 40 alternating calls). For the train rows, whose backward needs
    the same sums scattered back per token, it won nothing (54 ms either way), so they
    keep :func:`last_logits`.
    """
    if not through_tables(cfg):
        return last_logits(w, a, b, cfg)
    t = _one_layer_tables(w, cfg)
    pattern = _pattern(t, a, b, dim=1)  # [n, 3, head]: the bag weights' layout, no copy
    mlp = names.mlp(0)
    W_in, W_U = w[mlp + "W_in"], w[names.W_U]
    const = _plus(t.resid_pre[-1], w, "blocks.0.attn.b_O")
    table = torch.cat([t.vo.reshape(-1, cfg.d_model), const[None]]) @ torch.cat([W_in, W_U], 1)
    bags = token_bags(a, b, t.p, cfg.n_heads)
    weights = torch.cat([pattern.reshape(len(a), -1), bags.ones], 1)
    out = F.embedding_bag(bags.idx, table, per_sample_weights=weights, mode="sum")
    pre, direct = out.split([W_in.shape[1], W_U.shape[1]], 1)
    pre = _plus(pre, w, mlp + "b_in")
    hidden = pre.relu_() if cfg.act_fn == "relu" else _act(pre, cfg)   # in place: no backward
    logits = direct + hidden @ names.w_logit(w, 0)
    if mlp + "b_out" in w:
        logits = logits + w[mlp + "b_out"] @ W_U
    return _plus(logits, w, names.B_U)


def flush_subnormals(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` with its float32-subnormal entries set to 0: a hook on the logits, so the
    autograd path's backward reads what ``one_layer.dlogits_of`` gives the numpy path
    (why: :data:`grok_engine.one_layer.FLOAT32_TINY`)."""
    return grad.masked_fill(grad.abs() < torch.finfo(grad.dtype).tiny, 0.0)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The notebook's loss: mean cross-entropy in float64. logits [n, vocab] -> scalar"""
    log_probs = logits.to(torch.float64).log_softmax(dim=-1)
    return -log_probs.gather(dim=-1, index=labels[:, None])[:, 0].mean()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose argmax is the label (a 0-d tensor, no host sync)."""
    return (logits.argmax(-1) == labels).to(torch.float64).mean()
