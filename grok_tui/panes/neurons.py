"""Neurons pane: neurons ranked (by correlation with a+b for integer addition, by the
fraction of their variance one frequency explains for the modular tasks), and one neuron in
detail.

Renders the "neurons" study: table "ranking" (rank, neuron, r, abs_r or frequency,
frac_explained), grids "pre" / "post" [a, b] and table "pc_fit" (feature, coefficient) of
the neuron in ``options["neuron"]`` (the study's default: the top-ranked one), scalars
ranked_by, n_above, threshold, neuron, neuron_r or neuron_frequency and
neuron_frac_explained, fit_r2. It also shows the "probe" study's R^2: ``EXTRA_STUDIES = ("probe",)`` asks the app
to pass that result to :meth:`show_extra`.

Enter (or a click) on a ranking row posts ``OptionsChanged(pane, {"neuron": n})``; the
app recomputes the study and calls ``show`` with the grids of neuron n. The neuron is
shared with the Fourier pane (its "Neuron FT" view follows, and a neuron picked there is
shown here too) and kept across checkpoints; the ranking's cursor goes to its row.
"""

from __future__ import annotations

import numpy as np
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static, TabbedContent, TabPane

from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies.schema import SCHEMAS
from grok_tui.panes.base import NEXT_VIEW, StudyPane, fmt_num, fmt_pct
from grok_tui.widgets.heatmap import Heatmap
from grok_tui.widgets.result_table import ResultTable


class NeuronsPane(StudyPane):
    STUDY = "neurons"
    TITLE = "Neurons"
    KEY = "4"
    EXTRA_STUDIES = ("probe",)
    FOLLOWS = ("neuron",)

    BINDINGS = [NEXT_VIEW]

    DEFAULT_CSS = """
    NeuronsPane #ranking { width: auto; max-width: 68%; }
    NeuronsPane #neuron-info { height: auto; max-height: 2; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("waiting for a checkpoint", id="summary", classes="pane-summary")
        with Horizontal():
            yield ResultTable(id="ranking")
            with Vertical():
                yield Static("", id="neuron-info")
                with TabbedContent(id="views"):
                    with TabPane("pre", id="view-pre"):
                        yield Heatmap(id="pre", empty_text="no neuron selected")
                    with TabPane("post", id="view-post"):
                        yield Heatmap(id="post", empty_text="no neuron selected")
                    with TabPane("PC fit", id="view-fit"):
                        yield ResultTable(id="pc_fit")

    @property
    def shown_neuron(self) -> int | None:
        """The neuron whose grids are shown (from the result)."""
        n = self.read().scalar("neuron")
        return None if n is None else int(n)

    def render_result(self, result: StudyResult) -> None:
        self._summary()
        r = self.read(result)
        ranking = self.query_one("#ranking", ResultTable)
        ranking.set_table(r.table("ranking"))
        self._cursor_to_shown_neuron(ranking)
        self.query_one("#pre", Heatmap).set_grid(r.grid("pre"))
        self.query_one("#post", Heatmap).set_grid(r.grid("post"))
        self.query_one("#pc_fit", ResultTable).set_table(r.table("pc_fit"))
        if r.scalar("ranked_by") == "frequency_fraction":  # modular tasks
            response = (f"frequency {r.scalar('neuron_frequency')} explains "
                        f"{fmt_pct(r.scalar('neuron_frac_explained'))}")
        else:
            response = f"r {fmt_num(r.scalar('neuron_r'), 3)}"
        self.query_one("#neuron-info", Static).update(
            f"neuron {r.scalar('neuron')} · {response} · PC fit R² {fmt_num(r.scalar('fit_r2'), 3)}")

    def _cursor_to_shown_neuron(self, ranking: ResultTable) -> None:
        """The ranking's cursor on the row of the neuron shown (its rank changes with the
        checkpoint; the neuron stays)."""
        shown = self.shown_neuron
        neurons = self.read().column("ranking", "neuron")
        if shown is None or neurons is None or ranking.table is None:
            return
        found = np.flatnonzero(np.asarray(neurons) == shown)
        if not found.size or ranking.raw_row_index(ranking.cursor_row) == found[0]:
            return
        ranking.move_cursor(row=next(d for d in range(ranking.row_count) if ranking.raw_row_index(d) == found[0]))

    def render_extra(self, name: str, result: StudyResult | None) -> None:
        if name == "probe":
            self._summary()

    def _summary(self) -> None:
        parts = []
        if self.result is not None:
            r = self.read()
            total = r.table("ranking").n_rows
            if r.scalar("ranked_by") == "frequency_fraction":
                parts.append(f"{r.scalar('n_above')} of {total} neurons have one frequency "
                             f"explaining > {fmt_pct(r.scalar('threshold'))} of their variance")
            else:
                parts.append(f"{r.scalar('n_above')} of {total} neurons have |r| > "
                             f"{fmt_num(r.scalar('threshold'), 3)}")
        if "probe" in self.extras:
            probe = SCHEMAS["probe"].view(self.extras["probe"])
            parts.append(f"linear probe R² {fmt_num(probe.scalar('r2'), 4)}"
                         f" (baseline {fmt_num(probe.scalar('baseline_r2'), 2)})")
        elif "probe" in self.pending_extras and self.result is not None:
            parts.append("linear probe R² computing…")
        self.set_summary(" · ".join(parts) if parts else "waiting for a checkpoint")

    def on_result_table_row_selected(self, event: ResultTable.RowSelected) -> None:
        if event.result_table.id != "ranking":
            return
        event.stop()
        neuron = int(event.row["neuron"])
        self.options = {**self.options, "neuron": neuron}
        self.share_option("neuron", neuron)
        self.post_message(self.OptionsChanged(self, dict(self.options)))

    def default_export(self) -> Table | Grid | None:
        return self.read().table("ranking")
