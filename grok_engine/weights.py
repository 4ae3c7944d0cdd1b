"""Weights in HookedTransformer's state-dict format, and their initialisation.

Keys and shapes are those of TransformerLens's ``HookedTransformer.state_dict()`` (the
notebook's ``torch.save``), e.g. ``embed.W_E`` [d_vocab, d_model],
``blocks.0.attn.W_Q`` [n_heads, d_model, d_head], ``blocks.0.attn.W_O``
[n_heads, d_head, d_model], ``blocks.0.mlp.W_in`` [d_model, d_mlp],
``unembed.W_U`` [d_model, d_vocab_out]. The attention buffers ``mask`` and ``IGNORE``
are not weights and are left out here (``store`` adds them back when it writes a file so
that ``HookedTransformer.load_state_dict`` accepts it strictly).

Initialisation reproduces TransformerLens 3's ``init_mode="gpt2"`` with ``seed``: the
global RNG seeded with ``seed``, then ``normal_(0, 0.8/sqrt(d_model))`` on every ``W_``
parameter in registration order, biases zero, LayerNorm weights one — so a run started
with the notebook's config starts from the notebook's weights.
"""

from __future__ import annotations

import math

import torch

from grok_engine import param_names as names
from grok_engine.config import ModelConfig, TaskConfig


def param_shapes(task: TaskConfig, model: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Every parameter in HookedTransformer's registration order with its shape."""
    H, D, Dh, M = model.n_heads, model.d_model, model.d_head, model.d_mlp
    ln = model.normalization == "LN"
    out: list[tuple[str, tuple[int, ...]]] = [
        (names.W_E, (task.d_vocab, D)),
        (names.W_POS, (3, D)),
    ]
    for layer in range(model.n_layers):
        pre = names.block(layer)
        if ln:
            out += [(pre + "ln1.w", (D,)), (pre + "ln1.b", (D,))]
            out += [(pre + "ln2.w", (D,)), (pre + "ln2.b", (D,))]
        # TransformerLens 3 registers Q and O in AbstractAttention, then K and V in
        # Attention: this order decides which random numbers each matrix gets.
        out += [
            (pre + "attn.W_Q", (H, D, Dh)), (pre + "attn.W_O", (H, Dh, D)),
            (pre + "attn.b_Q", (H, Dh)), (pre + "attn.b_O", (D,)),
            (pre + "attn.W_K", (H, D, Dh)), (pre + "attn.W_V", (H, D, Dh)),
            (pre + "attn.b_K", (H, Dh)), (pre + "attn.b_V", (H, Dh)),
            (pre + "mlp.W_in", (D, M)), (pre + "mlp.b_in", (M,)),
            (pre + "mlp.W_out", (M, D)), (pre + "mlp.b_out", (D,)),
        ]
    if ln:
        out += [("ln_final.w", (D,)), ("ln_final.b", (D,))]
    out += [(names.W_U, (D, task.d_vocab_out)), (names.B_U, (task.d_vocab_out,))]
    return out


def is_bias(name: str) -> bool:
    """The parameters the notebook freezes: every name containing 'b_' (attention, MLP and
    unembed biases). LayerNorm ``w``/``b`` are trained, as in the notebook."""
    return "b_" in name


def init_weights(task: TaskConfig, model: ModelConfig) -> dict[str, torch.Tensor]:
    """Fresh weights, as ``HookedTransformer(cfg)`` with ``init_weights=True, seed=seed``."""
    gen = torch.Generator().manual_seed(model.seed)
    std = 0.8 / math.sqrt(model.d_model)
    weights: dict[str, torch.Tensor] = {}
    for name, shape in param_shapes(task, model):
        t = torch.empty(shape)
        leaf = name.rsplit(".", 1)[1]
        if leaf.startswith("W_"):
            t.normal_(0.0, std, generator=gen)
        elif leaf == "w":
            t.fill_(1.0)
        else:
            t.zero_()
        weights[name] = t
    return weights


def check_weights(weights: dict[str, torch.Tensor], task: TaskConfig, model: ModelConfig) -> None:
    """Raise ValueError naming the first key that is missing or has the wrong shape."""
    for name, shape in param_shapes(task, model):
        if name not in weights:
            raise ValueError(f"weights lack {name!r}")
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(weights[name].shape)}, expected {shape}")


def first_nonfinite(weights: dict[str, torch.Tensor]) -> str | None:
    """Name of the first weight tensor holding a NaN or an infinity, else None."""
    return next((name for name, w in weights.items() if not torch.isfinite(w).all()), None)
