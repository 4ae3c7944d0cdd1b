"""The analysis context: one checkpoint's weights, the hooked model and one activation cache
over every (a, b) pair, built once and shared by every study.

Switching pane never recomputes the forward pass: studies read ``ctx.cache`` and
``ctx.logits``. :class:`ContextCache` keeps the last few checkpoints (an LRU) so stepping
back and forth through checkpoints is a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from grok_engine.config import RunConfig
from grok_engine.tasks import Dataset, make_dataset

if TYPE_CHECKING:  # pragma: no cover
    from grok_engine.store import Run


@dataclass
class Context:
    """Everything the studies need about one checkpoint.

    tokens [N, 3], labels [N] (N = p*p rows, a-major: row a*p + b; mod_div lacks b = 0);
    logits [N, d_vocab_out] at the '=' position; cache: ActivationCache of
    ``model.run_with_cache(tokens)`` (every hook, every position).
    """

    config: RunConfig
    epoch: int
    weights: dict[str, torch.Tensor]
    dataset: Dataset
    run: "Run | None" = None
    model: Any = field(init=False)
    logits: torch.Tensor = field(init=False)
    cache: Any = field(init=False)

    def __post_init__(self) -> None:
        from grok_engine.model import HookedGrokTransformer  # imports transformer_lens

        self.model = HookedGrokTransformer(self.config.task, self.config.model, self.weights)
        self.model.eval()
        with torch.inference_mode():
            logits, self.cache = self.model.run_with_cache(self.dataset.tokens)
        self.logits = logits[:, -1]

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
        return self.weights["embed.W_E"][:-1]

    @property
    def W_logit(self) -> torch.Tensor:
        """W_out @ W_U of the last layer: [d_mlp, d_vocab_out]."""
        last = self.config.model.n_layers - 1
        return self.weights[f"blocks.{last}.mlp.W_out"] @ self.weights["unembed.W_U"]

    @property
    def neuron_acts(self) -> torch.Tensor:
        """Post-activation of the last layer's MLP at '=': [N, d_mlp]."""
        return self.cache["post", self.config.model.n_layers - 1, "mlp"][:, -1, :]

    @property
    def neuron_pre_acts(self) -> torch.Tensor:
        return self.cache["pre", self.config.model.n_layers - 1, "mlp"][:, -1, :]

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


class ContextCache:
    """LRU of contexts keyed by (run folder, epoch)."""

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, int], Context] = OrderedDict()

    def get(self, run: "Run", epoch: int) -> Context:
        key = (str(run.path), epoch)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        ctx = context_for(run, epoch)
        self._items[key] = ctx
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return ctx
