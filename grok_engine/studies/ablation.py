"""PC ablation of the embeddings (notebook: ``ablate_pc2_hook`` and the failure table).

The notebook keeps only PC1 of the centred embedding: a hook on ``hook_embed`` replaces
the embedding of the a and b tokens (positions 0 and 1, not '=') by
``mean + ((emb - mean) . pc1) pc1`` and compares the accuracy before and after. On its
p=10 addition run accuracy falls from 1.00 to 0.42 (58 failing pairs): PC2 matters.

Here the kept components are an option (``keep``, 1-based, default PC1 only). The hook
only ever changes the embedding of a token at positions 0 and 1, and '=' never sits there,
so the same ablation is the model with the p number rows of ``W_E`` projected: one fast
last-position pass over all rows (``fast.last_logits``), not a hooked forward of every
position (at p=113 that took the app's checkpoint switch from ~2.6 s to well under the
rest of the panes). ``tests/engine/test_studies_ablation.py`` holds it to the notebook's
hook.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from grok_engine.errors import GrokError
from grok_engine.fast import last_logits
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register
from grok_engine.studies.embedding import embedding_pca


def parse_keep(keep: Any, n_components: int) -> tuple[int, ...]:
    """1-based component indices to keep, validated: an int, ``"1,2"`` or an iterable of
    ints, each in 1 .. n_components. Returns them sorted, without repeats."""
    if isinstance(keep, str):
        parts = [s.strip() for s in keep.replace(" ", ",").split(",") if s.strip()]
        try:
            keep = [int(s) for s in parts]
        except ValueError:
            raise GrokError(f"keep={keep!r} is not a list of component numbers: "
                            f"allowed integers 1..{n_components}") from None
    elif isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        keep = [int(keep)]
    if not isinstance(keep, Iterable):
        raise GrokError(f"keep={keep!r} is not a list of component numbers: "
                        f"allowed integers 1..{n_components}")
    values = list(keep)
    if not values:
        raise GrokError(f"keep=() is empty: keep at least one component of 1..{n_components}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= n_components:
            raise GrokError(f"keep={tuple(values)!r} has component {v!r} out of range: "
                            f"allowed integers 1..{n_components}")
    return tuple(sorted({int(v) for v in values}))


def ablated_logits(ctx, mean: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Logits at '=' [rows, d_vocab_out] with the number tokens' embeddings replaced by
    ``mean + ((W_E[t] - mean) @ kept.T) @ kept``; ``kept`` [m, d_model] orthonormal rows."""
    w = dict(ctx.weights)
    W_E = w["embed.W_E"]
    p = ctx.p
    w["embed.W_E"] = torch.cat([((W_E[:p] - mean) @ kept.T) @ kept + mean, W_E[p:]])
    with torch.inference_mode():
        return last_logits(w, ctx.tokens[:, 0], ctx.tokens[:, 1], ctx.config.model)


@register("ablation")
def ablation(ctx, keep: Any = (1,)) -> StudyResult:
    """Scalars acc_before, acc_after, n_failures, keep; table "failures" (a, b, true,
    predicted), sorted by (true, a, b) as the notebook's; grid "failures" over (a, b):
    1 = fails after the ablation, 0 = still right, NaN = no such row."""
    mean, components, _, _ = embedding_pca(ctx.W_E)
    kept_ids = parse_keep(keep, components.shape[0])
    dtype = ctx.weights["embed.W_E"].dtype
    kept = components[[k - 1 for k in kept_ids]].to(dtype)
    ablated = ablated_logits(ctx, mean.to(dtype), kept)
    labels = ctx.labels
    before = ctx.logits.argmax(-1) == labels
    predicted = ablated.argmax(-1)
    fails = predicted != labels

    a = ctx.tokens[:, 0][fails].numpy()
    b = ctx.tokens[:, 1][fails].numpy()
    true = labels[fails].numpy()
    pred = predicted[fails].numpy()
    order = np.lexsort((b, a, true))  # last key first: true, then a, then b

    result = StudyResult("ablation", ctx.epoch)
    names = ", ".join(f"PC{k}" for k in kept_ids)
    options = {"keep": list(kept_ids)}  # the components kept (export names carry them)
    result.add(Table("failures", {"a": a[order], "b": b[order], "true": true[order],
                                  "predicted": pred[order]},
                     title=f"Pairs that fail keeping only {names}",
                     description="Rows whose argmax after the ablation is not the label; "
                                 "predicted is the ablated model's answer.", options=options))
    p = ctx.p
    result.add(Grid("failures", ctx.to_grid(fails.to(torch.float64)), "a", "b",
                    list(range(p)), list(range(p)),
                    title=f"Failures keeping only {names} (1 = fails)", centered=False, options=options))
    result.scalars.update({
        "keep": list(kept_ids),
        "acc_before": float(before.to(torch.float64).mean()),
        "acc_after": float((~fails).to(torch.float64).mean()),
        "n_failures": int(fails.sum()),
        "n_rows": int(len(labels)),
    })
    return result
