"""The comparison screen: 2-8 runs side by side (``grok-tui compare A B ...``, or runs
marked with space in the run picker or the sweep's members table).

- Left, the training curves of every run overlaid: loss on a log scale (``v`` switches to
  accuracy), test solid in the run's colour, train dimmer. Each run keeps its colour
  (COLOURS, in the order given) whatever is pinned; the legend names each run.
- Right, one progress measure of every run overlaid (``m`` cycles: restricted loss,
  excluded loss, weight norm, ...), from the progress study's cache (computed in a worker
  when a run has none).
- Below, a table with a column per run: the config fields that differ (only those), the
  phase, the train and test 99% epochs, the delay, the final accuracies, key frequencies,
  final restricted and excluded loss and the weight norm
  (:func:`grok_engine.sweep.summary.run_figures`).

``b`` pins a baseline (cycles through the runs, then none): its column comes first, its
curves are drawn on top and its legend entry first, marked "baseline". ``e`` exports the
table to CSV (and the overlaid curves beside it, ``*_curves.csv``). Run ids are data,
never markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from grok_engine.results import Table
from grok_tui.screens.prompts import ExportScreen
from grok_tui.widgets.footer import Footer
from grok_tui.widgets.plots import COLOURS, RGB, LinePlot, Series, legend_lines, log_ticks
from grok_tui.widgets.result_table import ResultTable

EXPORTS_DIR = Path("exports")
PROGRESS_MEASURES = ("restricted_loss", "excluded_loss", "sum_sq_weights", "test_loss",
                     "test_restricted_ratio", "gini_W_E", "gini_W_logit")
LOG_MEASURES = ("restricted_loss", "excluded_loss", "sum_sq_weights", "test_loss", "test_restricted_ratio")
POINTS = 200  # points per curve handed to plotext (a curve of 50 000 epochs costs what 200 do)
FIGURE_ROWS = (("phase", "phase"), ("train 99%", "train_99"), ("test 99%", "test_99"), ("delay", "delay"),
               ("train acc", "train_acc"), ("test acc", "test_acc"), ("key freqs", "key_frequencies"),
               ("restricted loss", "restricted_loss"), ("excluded loss", "excluded_loss"),
               ("weight norm", "weight_norm"), ("epochs", "epochs_done"), ("status", "status"))


def run_colour(index: int) -> RGB:
    """The colour of the run at ``index`` in the compared list (stable across pins)."""
    return COLOURS[index % len(COLOURS)]


def dim(colour: RGB, amount: float = 0.45) -> RGB:
    """``colour`` mixed toward mid grey: the train curve beside the test one."""
    return tuple(int(c + (128 - c) * amount) for c in colour)  # type: ignore[return-value]


def thin(x: np.ndarray, y: np.ndarray, points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of (x, y), at most ``points`` evenly spaced (first and last kept)."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) > points:
        keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, y = x[keep], y[keep]
    return x, y


@dataclass
class ComparedRun:
    """What the screen shows of one run: its curves, its progress measures (None: not
    computed), its figures (RunFigures)."""

    run_id: str
    metrics: dict[str, np.ndarray]
    measures: dict[str, np.ndarray] | None
    figures: Any


class CompareLoaded(Message):
    def __init__(self, runs: list[ComparedRun], error: str = "") -> None:
        super().__init__()
        self.runs = runs
        self.error = error


class CompareExported(Message):
    def __init__(self, paths: list[Path], error: str = "") -> None:
        super().__init__()
        self.paths = paths
        self.error = error


def load_compared(store: Any, run_ids: Sequence[str]) -> list[ComparedRun]:
    """Every run's curves, figures and progress measures (computed where not cached)."""
    from grok_engine.studies.progress import cached_measures
    from grok_engine.sweep.summary import run_figures

    out = []
    for run_id in run_ids:
        run = store.open(run_id)
        figures = run_figures(run, compute=True)
        try:
            metrics = run.metrics().truncate(run.epochs_done()).as_dict()
        except Exception:  # noqa: BLE001 - its figures say why (status unreadable)
            metrics = {k: np.zeros(0) for k in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")}
        out.append(ComparedRun(run_id, metrics, cached_measures(run), figures))
    return out


def comparison_table(runs: Sequence[ComparedRun]) -> Table:
    """A column per run (named by its id), a row per figure: the differing config flags
    first, then FIGURE_ROWS. Raw values (CSV); key frequencies as "1 2 3"."""
    from grok_engine.sweep.summary import differing_flags

    figures = [r.figures for r in runs]
    flags = differing_flags(figures)
    names = flags + [label for label, _ in FIGURE_ROWS]
    columns: dict[str, list[Any]] = {"field": names}
    for r in runs:
        f = r.figures
        cells = [f.config.get(flag) for flag in flags]
        for _label, attr in FIGURE_ROWS:
            value = getattr(f, attr)
            if attr == "key_frequencies":
                value = " ".join(map(str, value)) if value else "-"
            cells.append("-" if value is None else value)
        columns[_unique(r.run_id, columns)] = cells
    return Table("compare", columns, title="Runs compared")


def _unique(name: str, taken: dict[str, Any]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name} ({n})"
    return out


def curves_table(runs: Sequence[ComparedRun]) -> Table:
    """Every run's four curves on the union of their epochs (NaN where a run has none):
    columns epoch, then ``<run>:train_loss`` ... per run."""
    epochs = np.unique(np.concatenate([np.asarray(r.metrics["epoch"], dtype=np.int64) for r in runs]))
    columns: dict[str, Any] = {"epoch": epochs}
    for r in runs:
        where = np.searchsorted(epochs, np.asarray(r.metrics["epoch"], dtype=np.int64))
        for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
            col = np.full(len(epochs), np.nan)
            col[where] = r.metrics[name]
            columns[f"{r.run_id}:{name}"] = col
    return Table("compare_curves", columns, title="Curves of the runs compared")


class ComparePlot(LinePlot):
    """A LinePlot whose legend names each run once (in its colour), not each curve, and
    whose log axis has no more ticks than its rows can show apart."""

    FRAME_ROWS = 5  # title, top and bottom border, tick labels, axis label

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_legend: list[tuple[str, str, RGB]] = []

    def legend_items(self) -> list[tuple[str, str, RGB]]:
        return list(self.run_legend)

    def log_axis(self, series: Sequence[Series]) -> dict[str, Any]:
        """ylim and yticks of a log axis over ``series``: log_ticks' decades, thinned to at
        most one tick per two rows (plotext shows one of two ticks that share a row, which
        one varies from process to process)."""
        logs = [math.log10(v) for s in series for v in s.y if v > 0 and math.isfinite(v)]
        if not logs:
            return {}
        positions, labels, limits = log_ticks(min(logs), max(logs))
        legend = len(legend_lines(self.run_legend, max(self.size.width, 1)))
        rows = max(self.size.height - legend - self.FRAME_ROWS, 2)
        keep = max(2, (rows + 1) // 2)
        step = max(1, math.ceil((len(positions) - 1) / (keep - 1)))
        chosen = sorted(set(range(0, len(positions), step)) | {len(positions) - 1})
        return {"ylim": limits, "yticks": ([positions[i] for i in chosen], [labels[i] for i in chosen])}


class CompareScreen(Screen):
    """Escape returns to the screen below."""

    HELP_NAME = "Compare"
    BINDINGS = [
        Binding("v", "toggle_curves", "Loss/accuracy"),
        Binding("m", "next_measure", "Progress measure"),
        Binding("b", "pin_baseline", "Pin baseline"),
        Binding("e", "export", "Export CSV"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, store: Any, run_ids: Sequence[str], baseline: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.run_ids = list(run_ids)
        self.baseline = baseline
        self.runs: list[ComparedRun] = []
        self.curve_kind = "loss"
        self.measure = PROGRESS_MEASURES[0]

    def compose(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield Static("", id="compare-title")
            with Horizontal(id="compare-plots"):
                yield ComparePlot(id="compare-curves")
                yield ComparePlot(id="compare-progress")
            yield ResultTable(id="compare-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-title", Static).update(
            Content(f"comparing {', '.join(self.run_ids)}  ·  reading the runs…"))
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        try:
            self.post_message(CompareLoaded(load_compared(self.store, self.run_ids)))
        except Exception as exc:  # noqa: BLE001 - one line, the screen stays
            self.post_message(CompareLoaded([], str(exc) or type(exc).__name__))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        if message.error:
            self.query_one("#compare-title", Static).update(Content(f"cannot compare: {message.error}"))
            self.notify(message.error, severity="error")
            return
        self.runs = message.runs
        self.redraw()
        self.query_one(ResultTable).focus()

    # -- drawing -------------------------------------------------------------------------
    def ordered(self) -> list[tuple[int, ComparedRun]]:
        """(colour index, run), the baseline first."""
        pairs = list(enumerate(self.runs))
        return sorted(pairs, key=lambda p: p[1].run_id != self.baseline)

    def legend(self) -> list[tuple[str, str, RGB]]:
        return [("━━", r.run_id + (" (baseline)" if r.run_id == self.baseline else ""), run_colour(i))
                for i, r in self.ordered()]

    def redraw(self) -> None:
        self._draw_title()
        self._draw_curves()
        self._draw_progress()
        self.query_one(ResultTable).set_table(comparison_table([r for _i, r in self.ordered()]))

    def _draw_title(self) -> None:
        pinned = f"  ·  baseline {self.baseline}" if self.baseline else ""
        self.query_one("#compare-title", Static).update(
            Content(f"comparing {', '.join(self.run_ids)}{pinned}"))

    def _draw_curves(self) -> None:
        plot = self.query_one("#compare-curves", ComparePlot)
        series = []
        for i, r in reversed(self.ordered()):  # the baseline last: drawn on top
            x = np.asarray(r.metrics["epoch"], dtype=np.float64)
            for split in ("train", "test"):
                sx, sy = thin(x, np.asarray(r.metrics[f"{split}_{self.curve_kind}"], dtype=np.float64))
                colour = run_colour(i) if split == "test" else dim(run_colour(i))
                series.append(Series(f"{r.run_id} {split}", sx.tolist(), sy.tolist(), colour))
        plot.run_legend = self.legend()
        xlim = self._xlim()
        if self.curve_kind == "loss":
            plot.set_data(series, title="loss (log); train dimmer", xlabel="epoch", log_y=True, xlim=xlim,
                          **plot.log_axis(series))
        else:
            plot.set_data(series, title="accuracy; train dimmer", xlabel="epoch", ylim=(0, 1), xlim=xlim)

    def _xlim(self) -> tuple[float, float]:
        last = [float(r.metrics["epoch"][-1]) for r in self.runs if len(r.metrics["epoch"])]
        return (0, max(last, default=1.0))

    def _draw_progress(self) -> None:
        plot = self.query_one("#compare-progress", ComparePlot)
        series = []
        for i, r in reversed(self.ordered()):
            if r.measures is None:
                continue
            sx, sy = thin(np.asarray(r.measures["epoch"], dtype=np.float64),
                          np.asarray(r.measures[self.measure], dtype=np.float64))
            series.append(Series(r.run_id, sx.tolist(), sy.tolist(), run_colour(i)))
        plot.run_legend = self.legend()
        log = self.measure in LOG_MEASURES
        plot.set_data(series, title=f"{self.measure.replace('_', ' ')}{' (log)' if log else ''}",
                      xlabel="epoch", log_y=log, xlim=self._xlim(), **(plot.log_axis(series) if log else {}))

    # -- actions -------------------------------------------------------------------------
    def action_toggle_curves(self) -> None:
        self.curve_kind = "acc" if self.curve_kind == "loss" else "loss"
        if self.runs:
            self._draw_curves()

    def action_next_measure(self) -> None:
        i = PROGRESS_MEASURES.index(self.measure)
        self.measure = PROGRESS_MEASURES[(i + 1) % len(PROGRESS_MEASURES)]
        if self.runs:
            self._draw_progress()

    def action_pin_baseline(self) -> None:
        """None -> the first run -> the next ... -> the last -> None."""
        order = [None, *self.run_ids]
        self.baseline = order[(order.index(self.baseline) + 1) % len(order)]
        if self.runs:  # the title line names the baseline
            self.redraw()

    def action_export(self) -> None:
        if not self.runs:
            self.notify("nothing to export yet", severity="warning")
            return
        ids = "+".join(self.run_ids)
        proposal = EXPORTS_DIR / f"compare_{ids[:120]}.csv"
        table = comparison_table([r for _i, r in self.ordered()])
        curves = curves_table(self.runs)

        def go(path: str | None) -> None:
            if path:
                self.write_export(table, curves, path)

        self.app.push_screen(ExportScreen("Export the comparison to CSV", str(proposal),
                                          "Enter writes (and *_curves.csv beside), Esc cancels"), go)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, table: Table, curves: Table, path: str) -> None:
        from grok_engine.export import write_csv

        try:
            first = write_csv(table, path)
            second = write_csv(curves, first.with_name(f"{first.stem}_curves{first.suffix or '.csv'}"))
            self.post_message(CompareExported([first, second]))
        except Exception as exc:  # noqa: BLE001
            self.post_message(CompareExported([], str(exc) or type(exc).__name__))

    def on_compare_exported(self, message: CompareExported) -> None:
        if message.error:
            self.notify(message.error, severity="error", title="export failed")
        else:
            self.notify(f"wrote {message.paths[0]} and {message.paths[1].name}", title="export")

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:  # opened by `grok-tui compare`: Escape leaves for the run picker
            self.app.action_open_run()
