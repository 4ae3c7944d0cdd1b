"""The comparison screen: 2-8 runs side by side (``grok-tui compare A B ...``, or runs
marked with space in the run picker or the sweep's members table).

- Left, the training curves of every run overlaid: loss on a log scale (``v`` switches to
  accuracy), test solid in the run's colour, train dimmer. Each run keeps its colour
  (COLOURS, in the order given) whatever is pinned; the legend names each run.
- Right, one progress measure of every run overlaid (``m`` cycles: restricted loss,
  excluded loss, weight norm, ...), from the progress study's cache, or computed.
- Below, a table with a column per run: the config fields that differ (only those), the
  phase, the train and test 99% epochs, the delay, the progress measures' phase ends, the
  final accuracies, key frequencies, final restricted and excluded loss and the weight
  norm (:mod:`grok_tui.screens.compare_data`).

The runs are read in two phases (compare_data) by one thread worker: first what costs
milliseconds (config, metrics, what the progress cache already has), drawn at once; then,
run by run, the progress measures the cache lacks (seconds a run at p=113), each run's
plot line and table cells filled in as it is done. Until then its cells show "…" and the
title line says how many runs are in. Escape cancels the rest (between two checkpoints);
what was computed is in each run's cache, so the next comparison starts from there.

``b`` pins a baseline (cycles through the runs, then none): its column comes first, its
curves are drawn on top and its legend entry first, marked "baseline". ``e`` exports the
table to CSV (and the overlaid curves beside it, ``*_curves.csv``). Run ids are data,
never markup.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
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
from textual.worker import Worker, get_current_worker

from grok_engine.results import Table
from grok_tui.screens.compare_data import (
    PENDING,
    PENDING_CSV,
    ComparedRun,
    comparison_table,
    complete_compared,
    curves_table,
    read_compared,
)
from grok_tui.screens.prompts import ExportScreen
from grok_tui.widgets.footer import Footer
from grok_tui.widgets.plots import COLOURS, RGB, LinePlot, Series, legend_lines, log_ticks
from grok_tui.widgets.result_table import ResultTable

EXPORTS_DIR = Path("exports")
PROGRESS_MEASURES = ("restricted_loss", "excluded_loss", "sum_sq_weights", "test_loss",
                     "test_restricted_ratio", "gini_W_E", "gini_W_logit")
LOG_MEASURES = ("restricted_loss", "excluded_loss", "sum_sq_weights", "test_loss", "test_restricted_ratio")
POINTS = 200  # points per curve handed to plotext (a curve of 50 000 epochs costs what 200 do)
PAINT_WAIT_S = 2.0  # the longest phase 2 waits for the first paint


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


class CompareLoaded(Message):
    """Phase 1 is done: every run, the pending ones without their progress figures."""

    def __init__(self, runs: list[ComparedRun], error: str = "") -> None:
        super().__init__()
        self.runs = runs
        self.error = error


class CompareRunDone(Message):
    """Phase 2 is done with the run at ``index``."""

    def __init__(self, index: int, run: ComparedRun) -> None:
        super().__init__()
        self.index = index
        self.run = run


class CompareComputing(Message):
    """Phase 2 computed checkpoint ``done`` of ``to_do`` of the run at ``index``."""

    def __init__(self, index: int, done: int, to_do: int) -> None:
        super().__init__()
        self.index, self.done, self.to_do = index, done, to_do


class CompareExported(Message):
    """The CSV files written (``pending``: runs whose progress cells were "pending")."""

    def __init__(self, paths: list[Path], error: str = "", pending: int = 0) -> None:
        super().__init__()
        self.paths = paths
        self.error = error
        self.pending = pending


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
    """Escape returns to the screen below (and cancels what phase 2 has left to compute)."""

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
        self.computing: tuple[int, int, int] | None = None  # phase 2: (run index, done, to do)
        self._worker: Worker | None = None
        # set once phase 1's loss overlay is on screen: phase 2 (torch on every core, and
        # the GIL between checkpoints) waits for it, so as not to slow the first paint
        self._painted = threading.Event()
        self._paint_timer: Any = None
        self._loaded_at = 0.0

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
        self._worker = self.load()

    # -- the two phases (compare_data), one thread worker --------------------------------
    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        """Phase 1 for every run, posted at once; then phase 2 run by run."""
        try:
            runs = [read_compared(self.store, run_id) for run_id in self.run_ids]
        except Exception as exc:  # noqa: BLE001 - one line, the screen stays
            self.post_message(CompareLoaded([], str(exc) or type(exc).__name__))
            return
        self.post_message(CompareLoaded(runs))
        worker, waited = get_current_worker(), time.monotonic()
        while not self._painted.wait(0.01) and not worker.is_cancelled:
            if time.monotonic() - waited > PAINT_WAIT_S:
                break  # the screen is not shown (another is on top): nothing to wait for
        self._complete(runs)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def resume_completing(self, runs: list[ComparedRun]) -> None:
        """Phase 2 for the runs an earlier Escape left pending."""
        self._complete(runs)

    def _complete(self, runs: list[ComparedRun]) -> None:
        """Phase 2 (on the worker thread): each pending run completed and posted, until the
        worker is cancelled (checked between runs and, inside a run, between checkpoints:
        the progress study then caches what it computed and raises ProgressStopped)."""
        from grok_engine.studies.progress import ProgressStopped

        worker = get_current_worker()
        for index, run in enumerate(runs):
            if worker.is_cancelled:
                return
            if not run.pending:
                continue

            def computed(done: int, to_do: int, _epoch: int, index: int = index) -> None:
                self.post_message(CompareComputing(index, done, to_do))

            try:
                run = complete_compared(self.store, run, computed, should_stop=lambda: worker.is_cancelled)
            except ProgressStopped:
                return
            except Exception as exc:  # noqa: BLE001 - that run's cells say "-", the others go on
                run = replace(run, pending=False, error=str(exc) or type(exc).__name__)
            if not worker.is_cancelled:
                self.post_message(CompareRunDone(index, run))

    def pending(self) -> list[ComparedRun]:
        """The runs phase 2 has not done yet."""
        return [r for r in self.runs if r.pending]

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        if message.error:
            self.query_one("#compare-title", Static).update(Content(f"cannot compare: {message.error}"))
            self.notify(message.error, severity="error", markup=False)
            return
        self.runs = message.runs
        self.redraw()
        self.query_one(ResultTable).focus()
        self._paint_timer = self.set_interval(0.01, self._check_painted)
        self._loaded_at = time.monotonic()

    def _check_painted(self) -> None:
        """Sets ``_painted`` once the loss overlay is built; gives up when the worker has."""
        if not self.query_one("#compare-curves", ComparePlot).build_pending:
            self._painted.set()
            self._paint_timer.stop()
        elif time.monotonic() - self._loaded_at > PAINT_WAIT_S:
            self._paint_timer.stop()

    def on_compare_computing(self, message: CompareComputing) -> None:
        if self.runs and self.runs[message.index].pending:
            self.computing = (message.index, message.done, message.to_do)
            self._draw_title()

    def on_compare_run_done(self, message: CompareRunDone) -> None:
        if not self.runs:
            return
        self.runs[message.index] = message.run
        self.computing = None
        if message.run.error:
            self.notify(message.run.error, severity="warning", title=f"progress measures of {message.run.run_id}",
                        markup=False)  # an error and a run id are data, never markup
        self._draw_title()
        self._draw_progress()
        self._draw_table()

    def on_screen_resume(self) -> None:
        """Back on this screen after an Escape cancelled phase 2: go on with it."""
        if self.pending() and (self._worker is None or self._worker.is_finished or self._worker.is_cancelled):
            self._worker = self.resume_completing(list(self.runs))

    # -- drawing -------------------------------------------------------------------------
    def ordered(self) -> list[tuple[int, ComparedRun]]:
        """(colour index, run), the baseline first."""
        pairs = list(enumerate(self.runs))
        return sorted(pairs, key=lambda p: p[1].run_id != self.baseline)

    def legend(self, progress: bool = False) -> list[tuple[str, str, RGB]]:
        """The legend of the curves, or (``progress``) of the progress measures: there a
        run without them is marked "…" (phase 2 is on its way) or "(no measures)"."""
        def name(r: ComparedRun) -> str:
            out = r.run_id + (" (baseline)" if r.run_id == self.baseline else "")
            if progress and r.measures is None:
                out += f" {PENDING}" if r.pending else " (no measures)"
            return out

        return [("━━", name(r), run_colour(i)) for i, r in self.ordered()]

    def redraw(self) -> None:
        self._draw_title()
        self._draw_curves()
        self._draw_progress()
        self._draw_table()

    def _draw_table(self) -> None:
        self.query_one(ResultTable).set_table(comparison_table([r for _i, r in self.ordered()]))

    def status_text(self) -> str:
        """What phase 2 has still to do ("" when nothing)."""
        pending = self.pending()
        if not pending:
            return ""
        out = f"progress measures: {len(self.runs) - len(pending)} of {len(self.runs)} runs in"
        if self.computing is not None:
            index, done, to_do = self.computing
            out += f", computing {self.runs[index].run_id} (checkpoint {done} of {to_do})"
        return out + PENDING

    def _draw_title(self) -> None:
        pinned = f"  ·  baseline {self.baseline}" if self.baseline else ""
        status = self.status_text()
        self.query_one("#compare-title", Static).update(
            Content(f"comparing {', '.join(self.run_ids)}{pinned}{'  ·  ' + status if status else ''}"))

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
        plot.run_legend = self.legend(progress=True)
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

        def go(path: str | None) -> None:
            # What is known when Enter is pressed, phase 2 or not: the curves are all in
            # from phase 1, and a cell still being computed is written "pending", which no
            # reader can take for a value or for "-" (none). Waiting instead would hold the
            # file back for as long as phase 2 takes (minutes for long runs) and lose it to
            # an Escape; the notice says what is pending, and `e` again writes it whole.
            if not path:
                return
            table = comparison_table([r for _i, r in self.ordered()], pending_mark=PENDING_CSV)
            self.write_export(table, curves_table(self.runs), path, len(self.pending()))

        self.app.push_screen(ExportScreen("Export the comparison to CSV", str(proposal),
                                          "Enter writes (and *_curves.csv beside), Esc cancels"), go)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, table: Table, curves: Table, path: str, pending: int = 0) -> None:
        from grok_engine.export import write_csv

        try:
            first = write_csv(table, path)
            second = write_csv(curves, first.with_name(f"{first.stem}_curves{first.suffix or '.csv'}"))
            self.post_message(CompareExported([first, second], pending=pending))
        except Exception as exc:  # noqa: BLE001
            self.post_message(CompareExported([], str(exc) or type(exc).__name__))

    def on_compare_exported(self, message: CompareExported) -> None:
        if message.error:
            self.notify(message.error, severity="error", title="export failed", markup=False)
        elif message.pending:
            self.notify(f"wrote {message.paths[0]} and {message.paths[1].name}; the progress figures of "
                        f"{message.pending} run(s) were still being computed: written \"{PENDING_CSV}\" "
                        f"(export again when the title line no longer says so)",
                        severity="warning", title="export", markup=False)
        else:
            self.notify(f"wrote {message.paths[0]} and {message.paths[1].name}", title="export", markup=False)

    def action_back(self) -> None:
        # Textual cancels a removed screen's workers, but not those of a screen left in the
        # stack (`grok-tui compare`: the picker goes on top): cancel phase 2 here, always.
        self.workers.cancel_group(self, "compare")
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:  # opened by `grok-tui compare`: Escape leaves for the run picker
            self.app.action_open_run()
