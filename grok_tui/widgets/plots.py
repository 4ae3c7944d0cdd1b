"""Line, scatter and bar plots on textual-plotext, built off the UI thread.

Each widget owns its own plotext figure (``self.plt``, never the global ``plotext`` state)
and keeps the data it was given. ``redraw()`` (data changed) or a new size or theme asks for a
build: a thread worker clears the figure, draws the data on it (``draw``), builds it and
parses the ANSI text; the widget shows the result when it arrives and the previous figure
until then. Building a figure is pure Python (~10 ms each at 100x30, more under load) and a
pane has up to three, redrawn with every checkpoint while training follows: on the UI
thread that delayed key presses. Each build starts from a cleared figure because plotext's
``build`` rewrites the data in place.
Non-finite points (and non-positive ones on a log axis) are dropped: plotext cannot draw them.
Rendering depends only on the data and the size (deterministic, for snapshot tests).

What the figures say, and how: a log axis is log10 of the data on a linear axis with ticks
at whole decades labelled ``1e-7`` (plotext's own log ticks read "0.0000001"); each series,
the selected checkpoint and each phase line has its own colour (COLOURS, MARKER_COLOUR,
PHASE_COLOURS); the legend is a line under the figure (plotext's legend box sits on the
data), naming every series and vertical line, each in its colour.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from rich.color import Color, ColorParseError
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.message import Message
from textual_plotext import PlotextPlot

RGB = tuple[int, int, int]
CACHED_FIGURES = 3  # built figures a plot keeps (see BasePlot._figures): back and forth over a step

# Series colours (Okabe-Ito's colour-blind-safe set, read on dark and light themes); no red
# and no pink or violet among them: those are the selected checkpoint's and the phases'.
COLOURS: list[RGB] = [(86, 180, 233), (230, 159, 0), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                      (170, 110, 40), (0, 200, 200), (150, 150, 150)]
MARKER_COLOUR: RGB = (255, 40, 40)  # the selected checkpoint
PHASE_COLOURS: list[RGB] = [(204, 121, 167), (150, 110, 255), (120, 120, 120)]  # in phase order


@dataclass
class Series:
    """One line: ``y`` against ``x`` (1-D, equal length)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: RGB | None = None  # None: the next of COLOURS


@dataclass
class VLine:
    """A vertical line at ``x`` (a grokking phase boundary, the selected checkpoint); the
    legend names it ``label x`` ("memorization 86")."""

    x: float
    label: str = ""
    color: RGB = PHASE_COLOURS[-1]


def phase_lines(marks: Sequence[tuple[str, float]]) -> list[VLine]:
    """(phase name, epoch) in phase order -> a line per phase end, each in its colour."""
    return [VLine(float(epoch), name.replace("_", " "), PHASE_COLOURS[i % len(PHASE_COLOURS)])
            for i, (name, epoch) in enumerate(marks)]


def log_ticks(lo: float, hi: float, max_ticks: int = 6) -> tuple[list[float], list[str], tuple[float, float]]:
    """Ticks for an axis of log10 values spanning [lo, hi]: (positions, labels, limits).

    Whole decades labelled "1e-7", every n-th decade when there would be more than
    ``max_ticks`` (n divides the exponents); over at most two decades 2e and 5e ticks too.
    The limits are the labelled decades around the data: a tick at each end of the axis.

    >>> log_ticks(-7.2, 0.9)[1:]
    (['1e-8', '1e-6', '1e-4', '1e-2', '1e0', '1e2'], (-8.0, 2.0))
    >>> log_ticks(-2.5, -1.1)[1]
    ['1e-3', '2e-3', '5e-3', '1e-2', '2e-2', '5e-2', '1e-1']
    """
    first, last = math.floor(lo), math.ceil(hi)
    if last == first:
        last += 1
    mantissas = (1, 2, 5) if last - first <= 2 else (1,)
    step = max(1, math.ceil((last - first) / (max_ticks - 1)))
    first, last = step * math.floor(first / step), step * math.ceil(last / step)
    positions, labels = [], []
    for k in range(first, last + 1, step):
        for m in mantissas if k < last else (1,):
            positions.append(k + math.log10(m))
            labels.append(f"{m}e{k}")
    return positions, labels, (float(first), float(last))


def linear_ticks(lo: float, hi: float, max_ticks: int = 6) -> tuple[list[float], list[str]]:
    """Ticks at round numbers (1, 2 or 5 times a power of ten apart) inside [lo, hi], with
    labels of as many digits as the step needs (plotext's read "0.3890373", "-0.0").

    >>> linear_ticks(-0.002, 13383.7)[1]
    ['0', '5000', '10000']
    >>> linear_ticks(0.0, 1.0)[1]
    ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo + 0.0], [f"{lo + 0.0:.4g}"]  # + 0.0: never "-0"
    raw = (hi - lo) / max(max_ticks - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    ticks = [round(k * step, digits) + 0.0
             for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)]
    if step < 1e-3 or max(abs(lo), abs(hi)) >= 1e6:
        return ticks, [f"{t:.3g}" for t in ticks]
    return ticks, [f"{t:.{digits}f}" for t in ticks]


def vline_legend_items(lines: Sequence[VLine]) -> list[tuple[str, str, RGB]]:
    """Legend items of vertical lines: "┃ memorization 86" in the line's colour."""
    return [("┃", f"{v.label} {v.x:g}".strip(), v.color) for v in lines]


def _rich_colour(colour: RGB | str) -> Color | None:
    """An RGB triple, or a colour name both plotext and Rich know ("red"), for Rich."""
    if isinstance(colour, str):
        try:
            return Color.parse(colour)
        except ColorParseError:  # a plotext-only name: the glyph in the text colour
            return None
    return Color.from_rgb(*colour)


def legend_lines(items: Sequence[tuple[str, str, RGB | str]], width: int) -> list[Text]:
    """``(glyph, text, colour)`` items packed into lines of ``width`` cells: the glyph in
    its colour, then the text; items are never split."""
    lines: list[Text] = []
    line = Text()
    for glyph, text, colour in items:
        part = Text.assemble((glyph, Style(color=_rich_colour(colour), bold=True)), " " if glyph else "", text)
        if line.cell_len and line.cell_len + 2 + part.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append("  ")
        line.append_text(part)
    if line.cell_len:
        lines.append(line)
    return [ln[:width] for ln in lines]


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
        # Figures built before, by (size key, fingerprint of the data): stepping back to a
        # checkpoint draws the same data again, and a plotext build is ~20-100 ms of Python
        # (the Fourier pane at p=113: 104 ms of its revisit) that contends for the GIL with
        # the prefetch of the next checkpoint.
        self._figures: LRUCache[tuple[tuple[int, int, str], bytes], Text] = LRUCache(CACHED_FIGURES)
        self._fingerprint: bytes | None = None
        self._base_attributes = frozenset(vars(self)) - {"title", "xlabel", "ylabel"}

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

    def legend_items(self) -> list[tuple[str, str, RGB]]:
        """(glyph, text, colour) of each thing the legend under the figure names."""
        return []

    def redraw(self) -> None:
        """The data changed: build the figure again (shown when the build is done), or show
        the one built before for the same data and size."""
        self._generation += 1
        self._fingerprint = self.fingerprint()
        self.refresh()

    def fingerprint(self) -> bytes | None:
        """A digest of what ``draw`` and ``legend_items`` read: the public attributes a
        subclass set (its data) and the labels. None when they cannot be pickled (no reuse)."""
        state = sorted((k, v) for k, v in vars(self).items()
                       if not k.startswith("_") and k not in self._base_attributes)
        try:
            return hashlib.blake2b(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),
                                   digest_size=16).digest()
        except Exception:  # noqa: BLE001 - an attribute pickle cannot write: build every time
            return None

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
        known = self._figures.get((key, self._fingerprint)) if self._fingerprint is not None else None
        if known is not None:
            self._built = (key, self._generation, known)
            return known
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
                legend = legend_lines(self.legend_items(), width)
                plot_height = max(height - len(legend), 3)
                plt.clear_figure()
                self._start(plt)
                self.draw(plt)
                plt.plotsize(width, plot_height)
                plt._set_size(width, plot_height)  # as PlotextPlot.render does (textual-plotext #5)
                plt.theme(theme)
                figure = Text.from_ansi(plt.build().rstrip("\n"))
                text = Text("\n").join([figure, *legend[: height - plot_height]])
            except Exception as exc:  # noqa: BLE001 - one line in the plot, never a crash
                text = Text(f"plot failed: {exc}")
        self.post_message(PlotBuilt(key, generation, text))

    def on_plot_built(self, message: PlotBuilt) -> None:
        if message.generation == self._generation:
            self._built = (message.key, message.generation, message.text)
            if self._fingerprint is not None and not message.text.plain.startswith("plot failed"):
                self._figures[(message.key, self._fingerprint)] = message.text
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
        self.vline_legend = True

    def set_data(self, series: list[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
                 log_y: bool = False, vlines: Sequence[VLine] = (),
                 xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
                 yticks: tuple[list[float], list[str]] | None = None, vline_legend: bool = True) -> None:
        """``xlim``/``ylim``: fixed axis ranges; ``yticks``: (positions, labels);
        ``vline_legend=False``: the legend names the series only (the pane names the
        vertical lines once for several plots, :func:`vline_legend_items`)."""
        self.series, self.vlines, self.log_y = list(series), list(vlines), log_y
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlim, self.ylim, self.yticks = xlim, ylim, yticks
        self.vline_legend = vline_legend
        self.redraw()

    def set_marker(self, marker: VLine | None) -> None:
        """A highlighted vertical line (the selected checkpoint); None removes it."""
        self.marker = marker
        self.redraw()

    def _colour(self, i: int, series: Series) -> RGB:
        return series.color or COLOURS[i % len(COLOURS)]

    def _vertical_lines(self) -> list[VLine]:
        return [v for v in [*self.vlines, *([self.marker] if self.marker else [])] if np.isfinite(v.x)]

    def draw(self, plt: Any) -> None:
        if self.xlim is not None:
            plt.xlim(*self.xlim)
        ylim, yticks = self.ylim, self.yticks
        lows, highs = [], []
        for i, s in enumerate(self.series):
            x, y = finite_xy(s.x, s.y, self.log_y)
            if not x:
                continue
            if self.log_y:
                y = np.log10(y).tolist()
            lows.append(min(y))
            highs.append(max(y))
            # no label: plotext's legend box would sit on the data (legend_items draws it)
            plt.plot(x, y, marker="braille", color=self._colour(i, s))
        if lows and self.log_y:
            positions, labels, limits = log_ticks(min(lows), max(highs))
            yticks = yticks or (positions, labels)
            ylim = ylim or limits
        elif lows:
            yticks = yticks or linear_ticks(*(ylim or (min(lows), max(highs))))
        if ylim is not None:
            plt.ylim(*ylim)
        if lows and yticks is not None:
            plt.yticks(*yticks)
        for v in self._vertical_lines():
            plt.vline(v.x, color=v.color)

    def legend_items(self) -> list[tuple[str, str, RGB]]:
        items = [("━━", s.name, self._colour(i, s)) for i, s in enumerate(self.series)
                 if finite_xy(s.x, s.y, self.log_y)[0]]
        return items + (vline_legend_items(self._vertical_lines()) if self.vline_legend else [])


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
            plt.xticks(*linear_ticks(min(x), max(x)))
            plt.yticks(*linear_ticks(min(y), max(y)))
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
            else:  # named in legend_items, under the figure
                plt.multiple_bar(x, [self.values[k] for k in names],
                                 color=[COLOURS[i % len(COLOURS)] for i in range(len(names))])
            step = max(1, -(-n // self.MAX_TICKS))
            ticks = x[::step]
            plt.xticks(ticks, [self.categories[i] for i in ticks])
            heights = [v for values in self.values.values() for v in values]
            plt.yticks(*linear_ticks(min(0.0, *heights), max(0.0, *heights)))

    def legend_items(self) -> list[tuple[str, str, RGB]]:
        if len(self.values) < 2:
            return []  # one series: the title says what it is
        return [("██", name, COLOURS[i % len(COLOURS)]) for i, name in enumerate(self.values)]


__all__ = ["Series", "VLine", "BasePlot", "LinePlot", "ScatterPlot", "BarPlot", "PlotBuilt", "finite_xy",
           "log_ticks", "linear_ticks", "legend_lines", "vline_legend_items", "phase_lines", "COLOURS", "MARKER_COLOUR", "PHASE_COLOURS"]
