"""The analysis context: one checkpoint's weights and its activations over every (a, b)
pair, built once and shared by every study.

What the studies read at '=' (logits, the attention pattern from '=', the MLP's pre- and
post-activations, resid_mid) comes from one pass of ``grok_engine.fast.last_position``:
per-token attention tables and the last layer at '=' only — the notebook's questions are all
about that position. The hooked model and its full ``ActivationCache`` (every hook, every
position, as ``model.run_with_cache`` gives it in the notebook) are built on first use of
``ctx.model`` / ``ctx.cache``, once, and shared too. Switching pane never recomputes the
forward pass. The one cache of contexts is the RunSession's (grok_engine.session), bounded
by bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from grok_engine import param_names as names
from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.tasks import Dataset, make_dataset
from grok_engine.weights import first_nonfinite

if TYPE_CHECKING:  # pragma: no cover
    from grok_engine.store import Run


@dataclass
class Context:
    """Everything the studies need about one checkpoint.

    tokens [N, 3], labels [N] (N = p*p rows, a-major: row a*p + b; mod_div lacks b = 0);
    logits [N, d_vocab_out], neuron_acts / neuron_pre_acts [N, d_mlp] at '=';
    ``cache``: ActivationCache of ``model.run_with_cache(tokens)``, built on first use.
    """

    config: RunConfig
    epoch: int
    weights: dict[str, torch.Tensor]
    dataset: Dataset
    run: "Run | None" = None
    last: Any = field(init=False)
    _model: Any = field(init=False, default=None)
    _cache: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        from grok_engine.fast import last_position

        bad = first_nonfinite(self.weights)
        if bad is not None:  # every study of it would be NaN, or crash (linalg.svd)
            where = f" of run {self.run.id}" if self.run is not None else ""
            raise GrokError(f"checkpoint epoch={self.epoch}{where} has non-finite weights ({bad} "
                            f"holds NaN or inf): the run had diverged; choose an earlier checkpoint")
        with torch.inference_mode():
            self.last = last_position(self.weights, self.tokens[:, 0], self.tokens[:, 1],
                                      self.config.model)

    @property
    def logits(self) -> torch.Tensor:
        """Logits at '=': [N, d_vocab_out]."""
        return self.last.logits

    @property
    def model(self) -> Any:
        """The HookedGrokTransformer with these weights (imports transformer_lens once)."""
        if self._model is None:
            from grok_engine.model import HookedGrokTransformer

            self._model = HookedGrokTransformer(self.config.task, self.config.model, self.weights)
            self._model.eval()
        return self._model

    @property
    def cache(self) -> Any:
        """ActivationCache of ``model.run_with_cache(tokens)``: every hook, every position."""
        if self._cache is None:
            with torch.inference_mode():
                _, self._cache = self.model.run_with_cache(self.tokens)
        return self._cache

    def pattern_from_eq(self, layer: int) -> torch.Tensor:
        """Attention pattern from '=' of ``layer``: [N, head, 3] (key positions a, b, '=')."""
        if layer == self.config.model.n_layers - 1:
            return self.last.pattern
        return self.cache["pattern", layer, "attn"][:, :, -1, :]

    # -- conveniences in the notebook's names --------------------------------------------
    @property
    def p(self) -> int:
        return self.config.task.p

    @property
    def tokens(self) -> torch.Tensor:
        return self.dataset.tokens

    @property
    def labels(self) -> torch.Tensor:
        return self.dataset.labels

    @property
    def W_E(self) -> torch.Tensor:
        """Embedding without the '=' row: [p, d_model]."""
        return self.weights[names.W_E][:-1]

    @property
    def W_logit(self) -> torch.Tensor:
        """W_out @ W_U of the last layer: [d_mlp, d_vocab_out]."""
        return names.w_logit(self.weights, self.config.model.n_layers - 1)

    @property
    def neuron_acts(self) -> torch.Tensor:
        """Post-activation of the last layer's MLP at '=': [N, d_mlp]."""
        return self.last.post

    @property
    def neuron_acts_f64(self) -> torch.Tensor:
        """:attr:`neuron_acts` computed in float64 from the (float32) weights: [N, d_mlp].

        For fits that amplify rounding: the probe's least squares is nearly singular on these
        activations (condition number ~3e7 on the notebook's p=10 run), so the float32
        forward's last-bit differences between BLAS kernels (AVX2 vs AVX-512 vs SSE: other
        summation orders) moved its R^2 in the third digit. In float64 the activations, and
        so the fit, are a property of the weights.

        Computed on each access (one forward of the last position in float64, stopped at
        hook_post), not kept: at p=113 it is 52 MB, as much as the rest of the context, and
        only the probe reads it, once per checkpoint (the session caches the probe's result).
        """
        from grok_engine.fast import last_mlp_post

        w64 = {k: v.to(torch.float64) for k, v in self.weights.items()}
        with torch.inference_mode():
            return last_mlp_post(w64, self.tokens[:, 0], self.tokens[:, 1], self.config.model)

    @property
    def neuron_pre_acts(self) -> torch.Tensor:
        """Pre-activation of the last layer's MLP at '=': [N, d_mlp]."""
        return self.last.pre

    def to_grid(self, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Per-row values [N, ...] -> [p, p, ...] over (a, b); NaN where a row is absent."""
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        p = self.p
        out = np.full((p, p) + values.shape[1:], np.nan, dtype=np.float64)
        a = self.tokens[:, 0].numpy()
        b = self.tokens[:, 1].numpy()
        out[a, b] = values
        return out


def context_for(run: "Run", epoch: int) -> Context:
    return Context(run.config, epoch, run.load_checkpoint(epoch), run.dataset(), run=run)


def context_from_weights(config: RunConfig, weights: dict[str, torch.Tensor], epoch: int = 0,
                         dataset: Dataset | None = None) -> Context:
    return Context(config, epoch, weights, dataset if dataset is not None else make_dataset(config.task))
