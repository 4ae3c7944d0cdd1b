"""Line, scatter and bar plots on textual-plotext, built off the UI thread.

Each widget owns its own plotext figure (``self.plt``, never the global ``plotext`` state)
and keeps the data it was given. ``redraw()`` (data changed) or a new size or theme asks for a
build: a thread worker clears the figure, draws the data on it (``draw``), builds it and
parses the ANSI text; the widget shows the result when it arrives and the previous figure
until then. Building a figure is pure Python (~10 ms each at 100x30, more under load) and a
pane has up to three, redrawn with every checkpoint while training follows: on the UI
thread that delayed key presses. Each build starts from a cleared figure because plotext's
``build`` rewrites the data in place (on a log axis it takes the log again on each build).
Non-finite points (and non-positive ones on a log axis) are dropped: plotext cannot draw them.
Rendering depends only on the data and the size (deterministic, for snapshot tests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from rich.text import Text
from textual.message import Message
from textual_plotext import PlotextPlot

# Series colours in plotext names, chosen to read on dark and light themes.
COLOURS = ["cyan", "orange", "green", "magenta", "blue", "red", "yellow", "gray"]


@dataclass
class Series:
    """One line: ``y`` against ``x`` (1-D, equal length)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None  # a plotext colour name; None: the next of COLOURS


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


class PlotBuilt(Message, bubble=False):
    """A worker built a plot's figure: ``key`` (width, height, theme) and ``generation``
    say for which size and data."""

    def __init__(self, key: tuple[int, int, str], generation: int, text: Text) -> None:
        super().__init__()
        self.key, self.generation, self.text = key, generation, text


class BasePlot(PlotextPlot):
    """A plotext plot whose figure is built on a worker thread (see the module docstring);
    subclasses keep their data in attributes and draw it in ``draw``."""

    DEFAULT_CSS = """
    BasePlot { width: 1fr; height: 1fr; min-height: 6; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = ""
        self.xlabel = ""
        self.ylabel = ""
        self._generation = 0  # counts data changes
        self._built: tuple[tuple[int, int, str], int, Text] | None = None
        self._requested: tuple[tuple[int, int, str], int] | None = None
        self._figure_lock = threading.Lock()  # one build at a time on this figure

    def _start(self, plt: Any) -> None:
        if self.title:
            plt.title(self.title)
        if self.xlabel:
            plt.xlabel(self.xlabel)
        if self.ylabel:
            plt.ylabel(self.ylabel)

    def draw(self, plt: Any) -> None:
        """Draw the data on the cleared figure ``plt`` (subclasses; on a worker thread)."""
        raise NotImplementedError

    def redraw(self) -> None:
        """The data changed: build the figure again (shown when the build is done)."""
        self._generation += 1
        self.refresh()

    @property
    def build_pending(self) -> bool:
        """True until the figure shown is the one of the current data and size."""
        return self._built is None or self._built[:2] != (self._key(), self._generation)

    def _key(self) -> tuple[int, int, str]:
        return (self.size.width, self.size.height, self._get_plotext_theme_name(self.app.theme))

    def render(self) -> Text:
        key = self._key()
        if key[0] <= 0 or key[1] <= 0:
            return Text("")
        if self._built is not None and self._built[:2] == (key, self._generation):
            return self._built[2]
        if self._requested != (key, self._generation):
            self._requested = (key, self._generation)
            generation = self._generation
            self.run_worker(lambda: self._build(key, generation), thread=True,
                            group="plot-build", exit_on_error=False)
        return self._built[2] if self._built is not None else Text("")

    def _build(self, key: tuple[int, int, str], generation: int) -> None:
        """Worker thread: the figure of the data for ``key``, posted back as PlotBuilt."""
        with self._figure_lock:
            if generation != self._generation:
                return  # the data changed again: a newer build is on its way
            width, height, theme = key
            plt = self.plt
            try:
                plt.clear_figure()
                self._start(plt)
                self.draw(plt)
                plt.plotsize(width, height)
                plt._set_size(width, height)  # as PlotextPlot.render does (textual-plotext #5)
                plt.theme(theme)
                text = Text.from_ansi(plt.build())
            except Exception as exc:  # noqa: BLE001 - one line in the plot, never a crash
                text = Text(f"plot failed: {exc}")
        self.post_message(PlotBuilt(key, generation, text))

    def on_plot_built(self, message: PlotBuilt) -> None:
        if message.generation == self._generation:
            self._built = (message.key, message.generation, message.text)
            self.refresh()


class LinePlot(BasePlot):
    """Lines over a shared x axis, optional log y, vertical marker lines."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[Series] = []
        self.vlines: list[VLine] = []
        self.marker: VLine | None = None
        self.log_y = False
        self.xlim: tuple[float, float] | None = None
        self.ylim: tuple[float, float] | None = None
        self.yticks: tuple[list[float], list[str]] | None = None

    def set_data(self, series: list[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
                 log_y: bool = False, vlines: Sequence[VLine] = (),
                 xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
                 yticks: tuple[list[float], list[str]] | None = None) -> None:
        """``xlim``/``ylim``: fixed axis ranges; ``yticks``: (positions, labels)."""
        self.series, self.vlines, self.log_y = list(series), list(vlines), log_y
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlim, self.ylim, self.yticks = xlim, ylim, yticks
        self.redraw()

    def set_marker(self, marker: VLine | None) -> None:
        """A highlighted vertical line (the selected checkpoint); None removes it."""
        self.marker = marker
        self.redraw()

    def draw(self, plt: Any) -> None:
        if self.xlim is not None:
            plt.xlim(*self.xlim)
        if self.ylim is not None:
            plt.ylim(*self.ylim)
        drawn = False
        for i, s in enumerate(self.series):
            x, y = finite_xy(s.x, s.y, self.log_y)
            if x:
                plt.plot(x, y, label=s.name, marker="braille", color=s.color or COLOURS[i % len(COLOURS)])
                drawn = True
        if drawn and self.log_y:
            plt.yscale("log")
        if drawn and self.yticks is not None:
            plt.yticks(*self.yticks)
        for v in [*self.vlines, *([self.marker] if self.marker else [])]:
            if np.isfinite(v.x):
                plt.vline(v.x, color=v.color)


class ScatterPlot(BasePlot):
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

    def draw(self, plt: Any) -> None:
        x, y = finite_xy(self.x, self.y)
        if x:
            plt.scatter(x, y, marker="dot", color=COLOURS[0])
            if self.labels and len(self.labels) <= self.MAX_LABELS:
                for xi, yi, label in zip(self.x, self.y, self.labels):
                    if np.isfinite(xi) and np.isfinite(yi):
                        plt.text(label, xi, yi, color=COLOURS[1])


class BarPlot(BasePlot):
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

    def draw(self, plt: Any) -> None:
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


__all__ = ["Series", "VLine", "BasePlot", "LinePlot", "ScatterPlot", "BarPlot", "PlotBuilt", "finite_xy", "COLOURS"]
