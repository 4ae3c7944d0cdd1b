"""The Training pane: loss and accuracy curves, live while training runs.

Curves come from the run's metrics (grok_engine.train.Metrics) and grow with the trainer's
Progress chunks; the grokking phases come from the "curves" study (its ``phases`` table)
when present; a vertical line marks the selected checkpoint. Redraws are throttled to at
most 4 per second so a fast trainer cannot flood the UI thread.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from grok_engine.results import StudyResult, Table
from grok_tui.format import duration as fmt_duration, number as fmt_number
from grok_engine.studies.schema import SCHEMAS
from grok_tui.panes.base import StudyPane
from grok_tui.widgets.plots import (COLOURS, MARKER_COLOUR, LinePlot, Series, VLine, legend_lines, phase_lines,
                                   vline_legend_items)

METRIC_NAMES = ("train_loss", "test_loss", "train_acc", "test_acc")
REDRAW_INTERVAL_S = 0.25  # at most ~4 redraws per second
MIN_POINTS = 50  # points per curve handed to plotext: two per column (braille has two dots
# per cell across), so a curve of 50 000 epochs costs what one of 100 does


def _thin(x: np.ndarray, *ys: np.ndarray, points: int = 2 * MIN_POINTS) -> tuple[np.ndarray, ...]:
    """Keep at most ``points`` evenly spaced points (always the first and last)."""
    if len(x) <= points:
        return (x, *ys)
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
    return (x[keep], *[y[keep] for y in ys])


def phase_marks(result: StudyResult | None) -> list[tuple[str, int]]:
    """(phase name, epoch) from the curves study's ``phases`` table: each phase's last epoch
    (its ``end_epoch``); phases not reached are left out."""
    view = SCHEMAS["curves"].view(result)
    if view.table("phases") is None:
        return []
    marks = []
    for name, epoch in zip(view.column("phases", "phase"), view.column("phases", "end_epoch")):
        try:
            value = float(epoch)
        except (TypeError, ValueError):
            continue  # None: the run has not reached this phase
        if not math.isnan(value):
            marks.append((str(name), int(value)))
    return marks


class TrainingPane(StudyPane):
    """Train/test loss (log scale) and accuracy per epoch, the phases and the checkpoint."""

    STUDY = "curves"
    TITLE = "Training"
    KEY = "1"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epoch = np.zeros(0, np.int64)
        self.curves: dict[str, np.ndarray] = {n: np.zeros(0) for n in METRIC_NAMES}
        self.marker: int | None = None
        self.planned_epochs = 0
        self.training = False
        self.elsewhere = False  # another process trains the run (set_elsewhere)
        self.eta_s: float | None = None
        self._last_draw = 0.0
        self._redraw_pending = False
        self._note = ""
        self._phase_note = "phase ends:"
        self._stale = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="training-plots"):
            yield LinePlot(id="loss-plot")
            yield LinePlot(id="acc-plot")
        with Horizontal(id="training-progress"):
            yield ProgressBar(total=1, show_eta=False, id="train-bar")
            yield Static("", id="train-label")
        yield Static("", id="phases-label")

    def on_mount(self) -> None:
        super().on_mount()
        self._redraw()

    # -- data in ------------------------------------------------------------------------
    def set_metrics(self, metrics: Any, planned_epochs: int) -> None:
        """All metrics of the run (grok_engine.train.Metrics) and its planned epochs."""
        self.epoch = np.asarray(metrics.epoch, np.int64)
        self.curves = {n: np.asarray(getattr(metrics, n), np.float64) for n in METRIC_NAMES}
        self.planned_epochs = planned_epochs
        self.request_redraw()

    def append_metrics(self, chunk: Any) -> None:
        """A Progress chunk: epochs after the ones held (earlier ones are replaced)."""
        first = int(chunk.epoch[0]) if len(chunk.epoch) else None
        if first is not None and len(self.epoch) and self.epoch[-1] >= first:
            keep = self.epoch < first  # a resume rewrites from its checkpoint on
            self.epoch = self.epoch[keep]
            self.curves = {n: v[keep] for n, v in self.curves.items()}
        self.epoch = np.concatenate([self.epoch, np.asarray(chunk.epoch, np.int64)])
        for n in METRIC_NAMES:
            self.curves[n] = np.concatenate([self.curves[n], np.asarray(getattr(chunk, n), np.float64)])
        self.request_redraw()

    def set_training(self, training: bool, planned_epochs: int | None = None,
                     eta_s: float | None = None) -> None:
        self.training = training
        if planned_epochs is not None:
            self.planned_epochs = planned_epochs
        self.eta_s = eta_s if training else None
        self.request_redraw()

    def set_elsewhere(self, elsewhere: bool) -> None:
        """Whether another process trains the run (its label says so instead of "stopped")."""
        if elsewhere != self.elsewhere:
            self.elsewhere = elsewhere
            self.request_redraw()

    def set_marker(self, epoch: int | None) -> None:
        """The selected checkpoint, drawn as a vertical line."""
        if epoch != self.marker:
            self.marker = epoch
            self.request_redraw()

    def metrics_at(self, epoch: int) -> dict[str, float]:
        """Metrics after ``epoch`` epochs (the last evaluated test values up to there)."""
        out = {n: float("nan") for n in METRIC_NAMES}
        upto = self.epoch <= epoch
        if epoch <= 0 or not upto.any():
            return out
        i = int(np.nonzero(upto)[0][-1])
        for n in METRIC_NAMES:
            values = self.curves[n][: i + 1]
            ok = values[~np.isnan(values)]
            out[n] = float(ok[-1]) if len(ok) else float("nan")
        return out

    # -- the StudyPane contract ----------------------------------------------------------
    def show(self, result: StudyResult) -> None:
        super().show(result)
        marks = phase_marks(result)
        source = self.read(result).scalar("phases_source")  # progress measures, or the accuracy fallback
        self._phase_note = f"phase ends from {source}:" if source else "phase ends:"
        self._note = self._phase_note if marks else "no grokking phase reached yet"
        self.request_redraw()

    def show_loading(self, epoch: int) -> None:
        # The curves are already drawn from the metrics: no overlay, only the phases wait.
        pass

    def show_error(self, message: str) -> None:
        # Phases are an extra on this pane: say why they are missing, keep the curves.
        self._note = f"phases unavailable: {message}"
        self.request_redraw()

    def export_target(self) -> Table | None:
        if not len(self.epoch):
            return None
        return Table("curves", {"epoch": self.epoch, **self.curves},
                     title="Training curves", description="per-epoch loss and accuracy")

    # -- drawing -----------------------------------------------------------------------
    def request_redraw(self) -> None:
        if not self.is_mounted:
            return
        if not self.display:  # hidden behind another pane: draw when shown again
            self._stale = True
            return
        if self._redraw_pending:
            return
        delay = max(0.0, REDRAW_INTERVAL_S - (time.monotonic() - self._last_draw))
        self._redraw_pending = True
        if delay <= 0.001:
            self.call_after_refresh(self._redraw)
        else:
            self.set_timer(delay, self._redraw)

    def on_show(self) -> None:  # shown again by the ContentSwitcher
        if self._stale:
            self._stale = False
            self.request_redraw()

    def _redraw(self) -> None:
        self._redraw_pending = False
        self._last_draw = time.monotonic()
        marks = phase_marks(self.result)
        self._draw_loss(marks)
        self._draw_accuracy(marks)
        self._draw_progress()

    def _xlim(self) -> tuple[float, float]:
        return (0, max(self.planned_epochs, int(self.epoch[-1]) if len(self.epoch) else 1, 1))

    @staticmethod
    def _points(plot: LinePlot) -> int:
        return max(MIN_POINTS, 2 * plot.size.width)

    def _marks(self, marks: list[tuple[str, int]]) -> list[VLine]:
        """The phase ends (a colour each), then the selected checkpoint (MARKER_COLOUR)."""
        lines = phase_lines(marks)
        if self.marker is not None:
            lines.append(VLine(self.marker, "checkpoint", MARKER_COLOUR))
        return lines

    def _series(self, plot: LinePlot, kind: str) -> list[Series]:
        """Train and test ``kind`` ("loss" or "acc") thinned to the plot's width."""
        series = []
        for split, color in (("train", COLOURS[0]), ("test", COLOURS[1])):
            y = self.curves[f"{split}_{kind}"]
            ok = ~np.isnan(y)
            x, y = _thin(self.epoch[ok], y[ok], points=self._points(plot))
            if len(x):
                series.append(Series(split, x.tolist(), y.tolist(), color))
        return series

    def _draw_loss(self, marks: list[tuple[str, int]]) -> None:
        plot = self.query_one("#loss-plot", LinePlot)
        plot.set_data(self._series(plot, "loss"), title="loss (log scale)", xlabel="epoch",
                      log_y=True, vlines=self._marks(marks), xlim=self._xlim(), vline_legend=False)

    def _draw_accuracy(self, marks: list[tuple[str, int]]) -> None:
        plot = self.query_one("#acc-plot", LinePlot)
        plot.set_data(self._series(plot, "acc"), title="accuracy", xlabel="epoch",
                      vlines=self._marks(marks), xlim=self._xlim(), ylim=(0, 1), vline_legend=False)

    def _draw_progress(self) -> None:
        done = int(self.epoch[-1]) if len(self.epoch) else 0
        planned = max(self.planned_epochs, done, 1)
        self.query_one("#train-bar", ProgressBar).update(total=planned, progress=done)
        last = self.metrics_at(done)
        parts = [f"epoch {done}/{planned}", f"train {fmt_number(last['train_loss'])}",
                 f"test {fmt_number(last['test_loss'])}"]
        if self.training:
            parts.append(f"ETA {fmt_duration(self.eta_s)}" if self.eta_s is not None else "ETA -")
            parts.append("training (s stop)")
        elif self.elsewhere:
            parts.append("training in another process")
        elif done < planned:
            parts.append("stopped (r resume, c more)")
        else:
            parts.append("done (c more)")
        # wrapped between parts, never inside one ("done (c" / "more)" at 80 columns)
        label = self.query_one("#train-label", Static)
        width = max(label.size.width, 20)
        label.update(Text("\n").join(legend_lines([("", part, COLOURS[0]) for part in parts], width)))
        self.query_one("#phases-label", Static).update(self._phases_legend())

    def _phases_legend(self) -> Text:
        """The note, then the vertical lines of both plots, each in its colour (the plots'
        own legends name only the curves)."""
        width = max(self.query_one("#phases-label", Static).size.width, 40)
        marks = phase_marks(self.result) if self._note == self._phase_note else []
        items = vline_legend_items(self._marks(marks))
        return Text("\n").join(legend_lines([("", self._note, COLOURS[0]), *items], width))
