"""The hooked transformer for analysis: TransformerLens's hook system, HookedTransformer's
names.

``HookedGrokTransformer`` is a ``transformer_lens.HookedRootModule`` whose submodules,
parameters and hook points carry the names of TransformerLens's ``HookedTransformer``
(``embed.W_E``, ``blocks.0.attn.W_V``, ``hook_embed``, ``blocks.0.attn.hook_pattern``,
``blocks.0.mlp.hook_post``, ``blocks.0.hook_resid_mid``, ...), so the notebook's
``run_with_cache`` / ``run_with_hooks`` code and ``cache["post", 0, "mlp"]`` work as they
are. It runs every position, as the notebook's model does. Training does not use it:
``grok_engine.fast`` computes the same last-position logits with far less work.

Importing this module imports transformer_lens (seconds): the TUI does it in a worker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from grok_engine.config import ModelConfig, TaskConfig
from grok_engine.weights import check_weights, init_weights


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> [batch, pos, d_model]"""
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> [batch, pos, d_model]"""
        return self.W_pos[: tokens.shape[1]].unsqueeze(0).expand(tokens.shape[0], -1, -1)


class LayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, n_ctx: int = 3):
        super().__init__()
        H, D, Dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(H, D, Dh))
        self.W_K = nn.Parameter(torch.empty(H, D, Dh))
        self.W_V = nn.Parameter(torch.empty(H, D, Dh))
        self.W_O = nn.Parameter(torch.empty(H, Dh, D))
        self.b_Q = nn.Parameter(torch.zeros(H, Dh))
        self.b_K = nn.Parameter(torch.zeros(H, Dh))
        self.b_V = nn.Parameter(torch.zeros(H, Dh))
        self.b_O = nn.Parameter(torch.zeros(D))
        self.attn_scale = Dh ** 0.5
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)))
        self.register_buffer("IGNORE", torch.tensor(-torch.inf))
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, d_model] -> [batch, pos, d_model]"""
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / self.attn_scale
        n = x.shape[1]
        scores = torch.where(self.mask[:n, :n], scores, self.IGNORE)
        pattern = self.hook_pattern(F.softmax(self.hook_attn_scores(scores), dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act_fn = cfg.act_fn
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(F.relu(pre) if self.act_fn == "relu" else F.gelu(pre))
        return post @ self.W_out + self.b_out


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ln = cfg.normalization == "LN"
        self.ln1 = LayerNorm(cfg.d_model) if ln else nn.Identity()
        self.ln2 = LayerNorm(cfg.d_model) if ln else nn.Identity()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid))))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(self.ln2(resid))))


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab_out))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U


class HookedGrokTransformer(HookedRootModule):
    """The notebook's one-layer (or n-layer) transformer with TransformerLens hooks.

    ``model(tokens)`` maps tokens [batch, 3] to logits [batch, 3, d_vocab_out], like
    ``HookedTransformer``; ``state_dict()`` has HookedTransformer's keys.
    """

    def __init__(self, task: TaskConfig, model: ModelConfig,
                 weights: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.task_config = task
        self.cfg = model
        self.embed = Embed(task.d_vocab, model.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(3, model.d_model)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([TransformerBlock(model) for _ in range(model.n_layers)])
        self.ln_final = LayerNorm(model.d_model) if model.normalization == "LN" else nn.Identity()
        self.unembed = Unembed(model.d_model, task.d_vocab_out)
        self.setup()  # HookedRootModule: builds hook_dict / mod_dict from the names above
        self.load_weights(weights if weights is not None else init_weights(task, model))

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Load HookedTransformer-format weights (extra mask/IGNORE buffers are ignored)."""
        check_weights(weights, self.task_config, self.cfg)
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(weights[name])

    def weights(self) -> dict[str, torch.Tensor]:
        """Parameters only, detached, in HookedTransformer's key format."""
        return {name: p.detach() for name, p in self.named_parameters()}

    def run_with_cache(self, *args, return_cache_object: bool = True, **kwargs):
        """As HookedTransformer's: logits and an ``ActivationCache`` (so that
        ``cache["post", 0, "mlp"]`` works as in the notebook)."""
        logits, cache_dict = super().run_with_cache(*args, **kwargs)
        if return_cache_object:
            return logits, ActivationCache(cache_dict, self)
        return logits, cache_dict

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] int64 -> logits [batch, pos, d_vocab_out]"""
        tokens = tokens.to(self.embed.W_E.device)
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))
