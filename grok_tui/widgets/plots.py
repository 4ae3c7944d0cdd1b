"""Line, scatter and bar plots on textual-plotext.

Each widget owns its own plotext figure (``self.plt``, never the global ``plotext`` state)
and keeps the data it was given; every render rebuilds the figure from that data
(``clear_figure``, draw, build). Rebuilding is cheap and necessary: plotext's ``build``
rewrites the figure's data in place (on a log axis it takes the log again on each build,
which fails as soon as a logged value is negative), so a figure must never be built twice.
Non-finite points (and non-positive ones on a log axis) are dropped: plotext cannot draw them.
Rendering depends only on the data and the size (deterministic, for snapshot tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from textual_plotext import PlotextPlot

# Series colours in plotext names, chosen to read on dark and light themes.
COLOURS = ["cyan", "orange", "green", "magenta", "blue", "red", "yellow", "gray"]


@dataclass
class Series:
    """One line: ``y`` against ``x`` (1-D, equal length)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]


@dataclass
class VLine:
    """A vertical line at ``x`` (a grokking phase boundary, the selected checkpoint)."""

    x: float
    label: str = ""
    color: str = "gray"


def finite_xy(x: Sequence[float], y: Sequence[float], log_y: bool = False) -> tuple[list[float], list[float]]:
    """Drop points that plotext cannot draw (NaN, inf, and y <= 0 on a log axis)."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    if log_y:
        keep &= ya > 0
    return xa[keep].tolist(), ya[keep].tolist()


class _Plot(PlotextPlot):
    DEFAULT_CSS = """
    _Plot { width: 1fr; height: 1fr; min-height: 6; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = ""
        self.xlabel = ""
        self.ylabel = ""

    def _start(self) -> None:
        plt = self.plt
        plt.clear_figure()
        if self.title:
            plt.title(self.title)
        if self.xlabel:
            plt.xlabel(self.xlabel)
        if self.ylabel:
            plt.ylabel(self.ylabel)

    def draw(self) -> None:
        """Draw the data on a cleared figure (subclasses); called before every build."""
        raise NotImplementedError

    def redraw(self) -> None:
        """The data changed: render again (which draws it afresh)."""
        self.refresh()

    def render(self):
        self.draw()
        return super().render()


class LinePlot(_Plot):
    """Lines over a shared x axis, optional log y, vertical marker lines."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[Series] = []
        self.vlines: list[VLine] = []
        self.marker: VLine | None = None
        self.log_y = False

    def set_data(self, series: list[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
                 log_y: bool = False, vlines: Sequence[VLine] = ()) -> None:
        self.series, self.vlines, self.log_y = list(series), list(vlines), log_y
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.redraw()

    def set_marker(self, marker: VLine | None) -> None:
        """A highlighted vertical line (the selected checkpoint); None removes it."""
        self.marker = marker
        self.redraw()

    def draw(self) -> None:
        self._start()
        plt = self.plt
        drawn = False
        for i, s in enumerate(self.series):
            x, y = finite_xy(s.x, s.y, self.log_y)
            if x:
                plt.plot(x, y, label=s.name, marker="braille", color=COLOURS[i % len(COLOURS)])
                drawn = True
        if drawn and self.log_y:
            plt.yscale("log")
        for v in [*self.vlines, *([self.marker] if self.marker else [])]:
            if np.isfinite(v.x):
                plt.vline(v.x, color=v.color)


class ScatterPlot(_Plot):
    """Points ``(x[i], y[i])``, each annotated with ``labels[i]`` when there are few."""

    MAX_LABELS = 40

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.x: list[float] = []
        self.y: list[float] = []
        self.labels: list[str] = []

    def set_points(self, x: Sequence[float], y: Sequence[float], labels: Sequence[object] = (), *,
                   title: str = "", xlabel: str = "", ylabel: str = "") -> None:
        self.x = np.asarray(x, dtype=float).tolist()
        self.y = np.asarray(y, dtype=float).tolist()
        self.labels = [str(v) for v in labels]
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.redraw()

    def draw(self) -> None:
        self._start()
        plt = self.plt
        x, y = finite_xy(self.x, self.y)
        if x:
            plt.scatter(x, y, marker="dot", color=COLOURS[0])
            if self.labels and len(self.labels) <= self.MAX_LABELS:
                for xi, yi, label in zip(self.x, self.y, self.labels):
                    if np.isfinite(xi) and np.isfinite(yi):
                        plt.text(label, xi, yi, color=COLOURS[1])


class BarPlot(_Plot):
    """Bars per category; several named value lists become grouped bars."""

    MAX_TICKS = 10

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.categories: list[str] = []
        self.values: dict[str, list[float]] = {}
        self.highlight: set[str] = set()

    def set_bars(self, categories: Sequence[object], values: dict[str, Sequence[float]], *,
                 title: str = "", xlabel: str = "", ylabel: str = "") -> None:
        self.categories = [str(c) for c in categories]
        self.values = {k: np.nan_to_num(np.asarray(v, dtype=float), nan=0.0).tolist() for k, v in values.items()}
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.redraw()

    def draw(self) -> None:
        self._start()
        plt = self.plt
        if self.categories and self.values:
            names = list(self.values)
            # Numeric positions with a thinned set of named ticks: 113 labels cannot all fit.
            n = len(self.categories)
            x = list(range(n))
            if len(names) == 1:
                plt.bar(x, self.values[names[0]], color=COLOURS[0], width=0.6)
            else:
                plt.multiple_bar(x, [self.values[k] for k in names], labels=names,
                                 color=[COLOURS[i % len(COLOURS)] for i in range(len(names))])
            step = max(1, -(-n // self.MAX_TICKS))
            ticks = x[::step]
            plt.xticks(ticks, [self.categories[i] for i in ticks])


__all__ = ["Series", "VLine", "LinePlot", "ScatterPlot", "BarPlot", "finite_xy", "COLOURS"]
