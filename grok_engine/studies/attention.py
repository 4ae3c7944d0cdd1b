"""Attention from '=' (notebook: "Step 2: Attention Pattern Check", "Looking at Activations").

The answer is read at the '=' position, so what matters is how much each head at '='
attends to a, to b and to '=' itself: averaged over all inputs ("Average Attention Pattern
per Head") and as a map over (a, b) ("Attention for Head h from a -> =").
"""

from __future__ import annotations

import numpy as np

from grok_engine.errors import GrokError
from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import register

SOURCES = ("a", "b", "=")


def check_layer(ctx, layer: int) -> int:
    n_layers = ctx.config.model.n_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise GrokError(f"layer={layer!r} is out of range: allowed 0 to {n_layers - 1}")
    return layer


@register("attention")
def attention(ctx, layer: int = 0) -> StudyResult:
    """Table "mean_pattern" (head, to_a, to_b, to_eq) and grid "mean_pattern" [head, source]:
    attention from '=' averaged over every input row; grids "head{h}_to_a", "head{h}_to_b"
    [a, b]: head h's attention from '=' to a (to b) for each input (NaN where a row is
    absent, e.g. b = 0 for mod_div). ``layer``: which attention layer (default 0, the
    notebook's only one)."""
    layer = check_layer(ctx, layer)
    from_eq = ctx.pattern_from_eq(layer).double().cpu().numpy()  # [N, H, 3]
    mean = from_eq.mean(axis=0)  # [H, 3]
    n_heads = mean.shape[0]
    p = ctx.p
    labels = list(range(p))

    result = StudyResult("attention", ctx.epoch)
    options = {"layer": layer}  # every item is of one layer (export names carry it)
    result.add(Table("mean_pattern", {
        "head": np.arange(n_heads), "to_a": mean[:, 0], "to_b": mean[:, 1], "to_eq": mean[:, 2],
    }, title=f"Mean attention from '=' per head (layer {layer})",
        description="Attention weight from the '=' position to a, b and '=', averaged over all inputs.",
        options=options))
    result.add(Grid("mean_pattern", mean, "head", "source", list(range(n_heads)), list(SOURCES),
                    title=f"Mean attention from '=' (layer {layer})", centered=False, options=options))
    grid = ctx.to_grid(from_eq)  # [p, p, H, 3]
    for h in range(n_heads):
        for src, name in ((0, "a"), (1, "b")):
            result.add(Grid(f"head{h}_to_{name}", grid[:, :, h, src], "a", "b", labels, labels,
                            title=f"Head {h}: attention from '=' to {name}", centered=False,
                            options=options))
    result.scalars.update({"layer": layer, "n_heads": n_heads,
                           "mean_to_a": float(mean[:, 0].mean()), "mean_to_b": float(mean[:, 1].mean()),
                           "mean_to_eq": float(mean[:, 2].mean())})
    return result
