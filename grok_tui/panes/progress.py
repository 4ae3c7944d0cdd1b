"""Progress pane: the progress measures over every checkpoint of the run.

Renders the "progress" study: table "measures" (epoch + one column per measure), table
"cos_coeffs" (epoch, freq_1 ..), grid "cos_sim" [frequency, epoch], scalars
key_frequencies, n_checkpoints. The Measures plot shows one group of measures at a time
(``m`` cycles: all the losses together on a log axis, then each other measure); the
Coefficients plot shows the logits' coefficient on cos(w(a+b-c)) of each key frequency over
the checkpoints, beside the largest of the other frequencies (Nanda et al. 2023, fig. 7).
Both have vertical lines at the grokking phase ends and a marker at the selected checkpoint
(:meth:`set_selected_epoch`). The phase ends are read from the result's scalars
``memorization_end``, ``circuit_formation_end``, ``cleanup_end`` when it carries them, else
from the "curves" study, which ``EXTRA_STUDIES`` asks the app to pass to ``show_extra``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static, TabbedContent, TabPane

from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies.schema import SCHEMAS, ResultView
from grok_tui.panes.base import NEXT_VIEW, StudyPane
from grok_tui.widgets.heatmap import Heatmap
from grok_tui.widgets.plots import COLOURS, MARKER_COLOUR, LinePlot, Series, VLine, phase_lines
from grok_tui.widgets.result_table import ResultTable

PHASE_ENDS = (("memorization_end", "memorization"),
              ("circuit_formation_end", "circuit formation"),
              ("cleanup_end", "cleanup"))
LOSS_GROUP = "losses"
OTHERS_COLOUR = COLOURS[-1]  # the largest coefficient off the key frequencies: grey


MEASURES = SCHEMAS["progress"].tables["measures"].columns[1:]  # after "epoch"


def coefficient_series(result: ResultView, key_frequencies: list[int]) -> list[Series]:
    """One series per key frequency ("freq_k" of the cos_coeffs table) over the epochs, then
    the largest |coefficient| of the other frequencies at each epoch."""
    x = result.column("cos_coeffs", "epoch")
    columns = result.columns("cos_coeffs", "freq_*")
    keys = [f"freq_{k}" for k in key_frequencies if f"freq_{k}" in columns]
    series = [Series(f"freq {c.removeprefix('freq_')}", x, result.column("cos_coeffs", c)) for c in keys]
    others = [c for c in columns if c not in keys]
    if others:
        largest = np.abs(np.stack([np.asarray(result.column("cos_coeffs", c), dtype=float)
                                   for c in others])).max(axis=0)
        series.append(Series("largest other |coef|", x, largest, OTHERS_COLOUR))
    return series


class ProgressPane(StudyPane):
    STUDY = "progress"
    TITLE = "Progress"
    KEY = "7"
    EXTRA_STUDIES = ("curves",)

    BINDINGS = [
        NEXT_VIEW,
        Binding("m", "next_measure", "Next measure"),
        Binding("M", "previous_measure", "Previous measure"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.measure = LOSS_GROUP
        self.selected_epoch: int | None = None

    def compose(self) -> ComposeResult:
        yield Static("waiting for the run's checkpoints", id="summary", classes="pane-summary")
        with TabbedContent(id="views"):
            with TabPane("Measures", id="view-plot"):
                yield LinePlot(id="measures-plot")
            with TabPane("Cos sim", id="view-cos"):
                yield Heatmap(id="cos_sim", empty_text="no cosine similarities")
            with TabPane("Table", id="view-table"):
                yield ResultTable(id="measures")
            with TabPane("Coefficients", id="view-coeffs"):
                yield LinePlot(id="cos_coeffs")

    # -- what to plot -------------------------------------------------------------------
    @property
    def measure_groups(self) -> list[str]:
        """LOSS_GROUP (every column ending in _loss) then each other measure column."""
        if self.result is None:
            return []
        return [LOSS_GROUP, *[c for c in MEASURES if not c.endswith("_loss")]]

    def phase_lines(self) -> list[VLine]:
        """A line at each phase end the result (or the curves study) knows."""
        sources = [self.read(), SCHEMAS["curves"].view(self.extras.get("curves"))]
        marks = []
        for key, label in PHASE_ENDS:
            value = next((v for src in sources if (v := src.scalar(key)) is not None), None)
            if value is not None:
                marks.append((label, float(value)))
        return phase_lines(marks)

    def render_result(self, result: StudyResult) -> None:
        r = self.read(result)
        self.query_one("#measures", ResultTable).set_table(r.table("measures"))
        self.query_one("#cos_sim", Heatmap).set_grid(r.grid("cos_sim"))
        groups = self.measure_groups
        if groups and self.measure not in groups:
            self.measure = groups[0]
        self._plot()

    def render_extra(self, name: str, result: StudyResult) -> None:
        if name == "curves" and self.result is not None:
            self._plot()

    def _plot(self) -> None:
        if self.result is None:
            return
        r = self.read()
        names = [c for c in MEASURES if c.endswith("_loss")] if self.measure == LOSS_GROUP else [self.measure]
        values = np.concatenate([np.asarray(r.column("measures", n), dtype=float) for n in names])
        finite = values[np.isfinite(values)]
        # Losses span decades after grokking: a log axis when everything is positive and wide.
        log_y = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
        phases = self.phase_lines()
        marker = (VLine(float(self.selected_epoch), "selected", MARKER_COLOUR)
                  if self.selected_epoch is not None else None)
        plot = self.query_one("#measures-plot", LinePlot)
        plot.set_data([Series(n, r.column("measures", "epoch"), r.column("measures", n)) for n in names],
                      title=f"{self.measure} over checkpoints" + (" (log scale)" if log_y else ""),
                      xlabel="epoch", log_y=log_y, vlines=phases)
        plot.set_marker(marker)
        self._plot_coefficients(phases, marker)
        self._summary(phases)

    def _plot_coefficients(self, phases: list[VLine], marker: VLine | None) -> None:
        r = self.read()
        keys = [int(k) for k in r.scalar("key_frequencies")]
        plot = self.query_one("#cos_coeffs", LinePlot)
        plot.set_data(coefficient_series(r, keys), xlabel="epoch", vlines=phases,
                      title="coefficient of the logits on cos(w(a+b-c)), key frequencies"
                      if keys else "coefficient on cos(w(a+b-c)): no key frequencies found")
        plot.set_marker(marker)

    def _summary(self, phases: list[VLine]) -> None:
        r = self.read()
        keys = ", ".join(str(k) for k in r.scalar("key_frequencies")) or "-"
        parts = [f"{r.scalar('n_checkpoints')} checkpoints", f"key frequencies {keys}"]
        if phases:
            parts.append("phases end " + ", ".join(f"{v.label} {int(v.x)}" for v in phases))
        if self.selected_epoch is not None:
            parts.append(f"selected epoch {self.selected_epoch} (red)")
        text = " · ".join(parts)
        if r.scalar("note"):
            text += f"\n{r.scalar('note')}"
        self.set_summary(text)

    # -- the app's calls ------------------------------------------------------------------
    def set_selected_epoch(self, epoch: int) -> None:
        self.selected_epoch = int(epoch)
        if self.is_mounted and self.result is not None:
            self._plot()

    def _step_measure(self, step: int) -> None:
        groups = self.measure_groups
        if not groups:
            return
        i = groups.index(self.measure) if self.measure in groups else 0
        self.measure = groups[(i + step) % len(groups)]
        self._plot()

    def action_next_measure(self) -> None:
        self._step_measure(1)

    def action_previous_measure(self) -> None:
        self._step_measure(-1)

    def default_export(self) -> Table | Grid | None:
        r = self.read()
        if self.active_view() == "view-cos":
            return r.grid("cos_sim")
        return r.table("cos_coeffs" if self.active_view() == "view-coeffs" else "measures")
