"""The phase diagram of a sweep: one figure of its members over two grid axes.

The x and y axes are two of the sweep's grid axes (y may be None for a one-axis sweep).
Every other axis is either **aggregated** (the seed axes, ``SEED_FLAGS``: each cell
gathers the members that differ only in their seeds) or **fixed** at one of its values
(``fixed``: flag -> value; the first value when not given). A cell's value is the median
of its members' figures (the most common phase for ``phase``, ties to the earlier phase in
``PHASES``) and its spread the range (max - min; for ``phase`` the share of members in
that phase). NaN where no member of the cell has the figure (not trained yet, never
reached).

Colour modes (``COLOUR_MODES``): ``phase`` (the index in PHASES), ``test_99`` (log10 of
the test-99% epoch), ``delay`` (the grokking delay, epochs), ``test_acc`` (final test
accuracy) and ``restricted_loss`` (log10 of the final restricted loss).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from grok_engine.results import Grid
from grok_engine.sweep.phases import PHASES

SEED_FLAGS = ("seed", "data-seed")
COLOUR_MODES = ("phase", "test_99", "delay", "test_acc", "restricted_loss")
LOG_MODES = ("test_99", "restricted_loss")  # coloured by log10 of the value
MODE_TITLES = {"phase": "phase", "test_99": "test 99% epoch (log)", "delay": "grokking delay (epochs)",
               "test_acc": "final test accuracy", "restricted_loss": "final restricted loss (log)"}


@dataclass
class Cell:
    """One cell: its members' indices (into the figures list), value and spread."""

    members: list[int] = field(default_factory=list)
    value: float = math.nan
    spread: float = math.nan


@dataclass
class Diagram:
    """``grid.values[row, col]`` (row: y value, col: x value) and each cell's members."""

    grid: Grid
    cells: list[list[Cell]]
    x: str
    y: str | None
    mode: str
    fixed: dict[str, Any]
    aggregated: list[str]

    def cell(self, row: int, col: int) -> Cell:
        return self.cells[row][col]


def figure_value(fig: Any, mode: str) -> float:
    """The number ``mode`` colours ``fig`` (a RunFigures) by; NaN when it has none."""
    if mode == "phase":
        return float(PHASES.index(fig.phase)) if fig.phase in PHASES else math.nan
    raw = getattr(fig, mode)
    value = math.nan if raw is None else float(raw)
    if mode in LOG_MODES:
        return math.log10(value) if value > 0 else math.nan
    return value


def aggregate(values: Sequence[float], mode: str) -> tuple[float, float]:
    """(value, spread) of one cell's member values (NaN ones left out)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if not len(v):
        return math.nan, math.nan
    if mode == "phase":
        counts = np.bincount(v.astype(int), minlength=len(PHASES))
        top = int(np.argmax(counts))
        return float(top), float(counts[top] / len(values))
    return float(np.median(v)), float(v.max() - v.min())


def split_axes(axes: Sequence[dict[str, Any]], x: str, y: str | None) -> tuple[list[str], list[str]]:
    """(fixed flags, aggregated flags): the axes other than x and y."""
    others = [a["flag"] for a in axes if a["flag"] not in (x, y)]
    return [f for f in others if f not in SEED_FLAGS], [f for f in others if f in SEED_FLAGS]


def fixed_choices(axes: Sequence[dict[str, Any]], x: str, y: str | None) -> list[dict[str, Any]]:
    """Every combination of values of the fixed axes (one empty dict when there are none)."""
    fixed, _ = split_axes(axes, x, y)
    values = {a["flag"]: a["values"] for a in axes}
    return [dict(zip(fixed, combo)) for combo in itertools.product(*(values[f] for f in fixed))]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def build_diagram(axes: Sequence[dict[str, Any]], figures: Sequence[Any], x: str, y: str | None,
                  mode: str = "phase", fixed: dict[str, Any] | None = None, title: str = "") -> Diagram:
    """The diagram of ``figures`` (RunFigures of the members, with ``values``) over axes
    ``x`` and ``y`` of ``axes`` (sweep.json's list of {"flag", "values"})."""
    if mode not in COLOUR_MODES:
        raise ValueError(f"colour mode {mode!r} is not one of {', '.join(COLOUR_MODES)}")
    values = {a["flag"]: list(a["values"]) for a in axes}
    fixed_flags, aggregated = split_axes(axes, x, y)
    chosen = {f: (fixed or {}).get(f, values[f][0]) for f in fixed_flags}
    xs = values[x]
    ys = values[y] if y is not None else [None]
    cells = [[Cell() for _ in xs] for _ in ys]
    for i, fig in enumerate(figures):
        v = fig.values
        if not all(_same(v.get(f), chosen[f]) for f in fixed_flags):
            continue
        col = next((j for j, xv in enumerate(xs) if _same(v.get(x), xv)), None)
        row = 0 if y is None else next((j for j, yv in enumerate(ys) if _same(v.get(y), yv)), None)
        if col is not None and row is not None:
            cells[row][col].members.append(i)
    grid_values = np.full((len(ys), len(xs)), np.nan)
    for r, row_cells in enumerate(cells):
        for c, cell in enumerate(row_cells):
            cell.value, cell.spread = aggregate([figure_value(figures[m], mode) for m in cell.members], mode)
            grid_values[r, c] = cell.value
    grid = Grid(f"diagram_{mode}", grid_values, y or "-", x, [_label(v) for v in ys], [_label(v) for v in xs],
                title=title or MODE_TITLES[mode], centered=False,
                options={"x": x, "y": y or "-", **chosen})
    return Diagram(grid, cells, x, y, mode, chosen, aggregated)


def _label(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
