"""Progress pane: the progress measures over every checkpoint of the run.

Renders the "progress" study: table "measures" (epoch + one column per measure), table
"cos_coeffs" (epoch, freq_1 ..), grid "cos_sim" [frequency, epoch], scalars
key_frequencies, n_checkpoints. The plot shows one group of measures at a time (``m``
cycles: all the losses together on a log axis, then each other measure), with vertical
lines at the grokking phase ends and a marker at the selected checkpoint
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
from grok_tui.panes.base import NEXT_VIEW, StudyPane
from grok_tui.widgets.heatmap import Heatmap
from grok_tui.widgets.plots import LinePlot, Series, VLine
from grok_tui.widgets.result_table import ResultTable

PHASE_ENDS = (("memorization_end", "memorization", "yellow"),
              ("circuit_formation_end", "circuit formation", "green"),
              ("cleanup_end", "cleanup", "blue"))
LOSS_GROUP = "losses"


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
                yield ResultTable(id="cos_coeffs")

    # -- what to plot -------------------------------------------------------------------
    @property
    def measure_groups(self) -> list[str]:
        """LOSS_GROUP (every column ending in _loss) then each other measure column."""
        t = None if self.result is None else self.result.tables.get("measures")
        if t is None:
            return []
        others = [c for c in t.column_names if c != "epoch" and not c.endswith("_loss")]
        has_losses = any(c.endswith("_loss") for c in t.column_names)
        return ([LOSS_GROUP] if has_losses else []) + others

    def phase_lines(self) -> list[VLine]:
        """A line at each phase end the result (or the curves study) knows."""
        sources = [s for s in (self.result, self.extras.get("curves")) if s is not None]
        lines = []
        for key, label, colour in PHASE_ENDS:
            for src in sources:
                value = src.scalars.get(key)
                if value is not None:
                    lines.append(VLine(float(value), label, colour))
                    break
        return lines

    def render_result(self, result: StudyResult) -> None:
        self.query_one("#measures", ResultTable).set_table(result.tables.get("measures"))
        self.query_one("#cos_coeffs", ResultTable).set_table(result.tables.get("cos_coeffs"))
        self.query_one("#cos_sim", Heatmap).set_grid(result.grids.get("cos_sim"))
        groups = self.measure_groups
        if groups and self.measure not in groups:
            self.measure = groups[0]
        self._plot()

    def render_extra(self, name: str, result: StudyResult) -> None:
        if name == "curves" and self.result is not None:
            self._plot()

    def _plot(self) -> None:
        plot = self.query_one("#measures-plot", LinePlot)
        t = None if self.result is None else self.result.tables.get("measures")
        if t is None:
            return
        x = t.columns["epoch"]
        names = ([c for c in t.column_names if c.endswith("_loss")] if self.measure == LOSS_GROUP
                 else [self.measure])
        values = np.concatenate([np.asarray(t.columns[n], dtype=float) for n in names]) if names else np.array([])
        finite = values[np.isfinite(values)]
        # Losses span decades after grokking: a log axis when everything is positive and wide.
        log_y = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
        phases = self.phase_lines()
        plot.set_data([Series(n, x, t.columns[n]) for n in names],
                      title=f"{self.measure} over checkpoints" + (" (log)" if log_y else ""),
                      xlabel="epoch", log_y=log_y, vlines=phases)
        plot.set_marker(VLine(float(self.selected_epoch), "selected", "red")
                        if self.selected_epoch is not None else None)
        self._summary(phases)

    def _summary(self, phases: list[VLine]) -> None:
        assert self.result is not None
        s = self.result.scalars
        keys = ", ".join(str(k) for k in s.get("key_frequencies", [])) or "-"
        parts = [f"{s.get('n_checkpoints', '?')} checkpoints", f"key frequencies {keys}"]
        if phases:
            parts.append("phases end " + ", ".join(f"{v.label} {int(v.x)}" for v in phases))
        if self.selected_epoch is not None:
            parts.append(f"selected epoch {self.selected_epoch} (red)")
        text = " · ".join(parts)
        if s.get("note"):
            text += f"\n{s['note']}"
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
        if self.result is None:
            return None
        if self.active_view() == "view-cos":
            return self.result.grids.get("cos_sim")
        if self.active_view() == "view-coeffs":
            return self.result.tables.get("cos_coeffs")
        return self.result.tables.get("measures")
