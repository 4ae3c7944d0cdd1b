"""The model's parameter names (TransformerLens's ``HookedTransformer.state_dict()`` keys)
and ``W_logit``, written once. Light: no torch (a function here works on torch tensors and
numpy arrays alike).

    embed.W_E [d_vocab, d_model]          pos_embed.W_pos [3, d_model]
    blocks.L.ln1.w / .b, blocks.L.ln2.w / .b (normalization "LN")
    blocks.L.attn.W_Q / W_K / W_V [n_heads, d_model, d_head], W_O [n_heads, d_head, d_model],
      b_Q / b_K / b_V [n_heads, d_head], b_O [d_model]
    blocks.L.mlp.W_in [d_model, d_mlp], b_in [d_mlp], W_out [d_mlp, d_model], b_out [d_model]
    ln_final.w / .b                       unembed.W_U [d_model, d_vocab_out], b_U [d_vocab_out]
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

W_E = "embed.W_E"
W_POS = "pos_embed.W_pos"
W_U = "unembed.W_U"
B_U = "unembed.b_U"
LN_FINAL = "ln_final"


def block(layer: int) -> str:
    """The prefix of layer ``layer``'s parameters: 'blocks.L.'."""
    return f"blocks.{layer}."


def attn(layer: int, name: str = "") -> str:
    """'blocks.L.attn.' + ``name`` (W_Q, W_K, W_V, W_O, b_Q, ...)."""
    return f"blocks.{layer}.attn.{name}"


def mlp(layer: int, name: str = "") -> str:
    """'blocks.L.mlp.' + ``name`` (W_in, b_in, W_out, b_out)."""
    return f"blocks.{layer}.mlp.{name}"


def w_logit(weights: Mapping[str, Any], layer: int, cast: Callable[[Any], Any] | None = None) -> Any:
    """W_out @ W_U of ``layer`` (the last one, for the logits): [d_mlp, d_vocab_out], each
    factor through ``cast`` first (e.g. to float64) when given. What a neuron's activation
    adds to the logits, bypassing the residual stream's other terms."""
    W_out, W_U_ = weights[mlp(layer, "W_out")], weights[W_U]
    if cast is not None:
        W_out, W_U_ = cast(W_out), cast(W_U_)
    return W_out @ W_U_
