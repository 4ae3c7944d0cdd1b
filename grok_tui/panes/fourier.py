"""Fourier pane: the embedding in the Fourier basis, key frequencies, neuron clusters,
W_logit's frequencies, logit periodicity and one neuron's 2-D transform.

Renders the "fourier" study: tables "embedding_norms" (component, frequency, norm),
"frequency_shares", "neuron_clusters", "cluster_sizes", "w_logit_norms",
"logit_periodicity"; grids "neuron_freq_norm", "neuron_fourier"; scalars key_frequencies
(empty when none is found: the summary then names top_frequencies, the largest shares),
n_clustered, residual_fraction, loss, approx_loss, and ``note`` when the task is not
periodic (integer addition: only the embedding norms exist, the other views say so).

The "Freq map" shows the neurons sorted by the frequency that explains most of each (then
by how much), so the clusters read as blocks. The "Neuron FT" view shows the 2-D Fourier
transform of ``options["neuron"]``: Enter on a row of the neuron clusters table, ``x`` /
``X`` (next / previous neuron), or the neuron picked in the Neurons pane (panes share the
neuron, and keep it as the checkpoint changes). Its constant term (the neuron's mean,
tens of times the rest) is left out of the colours unless ``z`` shows it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static, TabbedContent, TabPane

from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies.schema import SCHEMAS
from grok_tui.panes.base import NEXT_VIEW, StudyPane, fmt_num, fmt_pct
from grok_tui.widgets.heatmap import Heatmap, format_value
from grok_tui.widgets.plots import BarPlot
from grok_tui.widgets.result_table import ResultTable

# tab id -> the table or grid it shows (what `e` exports when nothing is focused)
VIEWS = {
    "view-embed": "embedding_norms",
    "view-shares": "frequency_shares",
    "view-clusters": "cluster_sizes",
    "view-freqmap": "neuron_freq_norm",
    "view-wlogit": "w_logit_norms",
    "view-logits": "logit_periodicity",
    "view-neuronft": "neuron_fourier",
}


def sort_neurons_by_frequency(grid: Grid) -> Grid:
    """``neuron_freq_norm`` [frequency, neuron] with its neurons (columns) ordered by the
    frequency explaining most of each, then by that fraction, largest first; the column
    labels keep the neuron numbers."""
    values = np.asarray(grid.values, dtype=float)
    filled = np.nan_to_num(values, nan=-np.inf)
    best = filled.argmax(axis=0)
    order = np.lexsort((-filled.max(axis=0), best))
    return Grid(grid.name, values[:, order], grid.row_axis, grid.col_axis, list(grid.row_labels),
                [grid.col_labels[j] for j in order],
                title=f"{grid.title or grid.name}, neurons sorted by frequency", centered=grid.centered)


class FourierPane(StudyPane):
    STUDY = "fourier"
    TITLE = "Fourier"
    KEY = "6"
    FOLLOWS = ("neuron",)

    BINDINGS = [
        NEXT_VIEW,
        Binding("x", "step_neuron(1)", "Next neuron"),
        Binding("X", "step_neuron(-1)", "Previous neuron"),
        Binding("z", "toggle_constant", "Constant term on/off"),
    ]

    DEFAULT_CSS = """
    FourierPane #cluster_sizes { width: auto; max-width: 50%; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.show_constant = False

    def compose(self) -> ComposeResult:
        yield Static("waiting for a checkpoint", id="summary", classes="pane-summary")
        with TabbedContent(id="views"):
            with TabPane("Embed", id="view-embed"):
                yield BarPlot(id="embedding_norms")
            with TabPane("Shares", id="view-shares"):
                yield ResultTable(id="frequency_shares")
            with TabPane("Clusters", id="view-clusters"):
                with Horizontal():
                    yield ResultTable(id="cluster_sizes")
                    yield ResultTable(id="neuron_clusters")
            with TabPane("Freq map", id="view-freqmap"):
                yield Heatmap(id="neuron_freq_norm", empty_text="no neuron frequencies for this task")
            with TabPane("W_logit", id="view-wlogit"):
                yield BarPlot(id="w_logit_norms")
            with TabPane("Logits", id="view-logits"):
                yield ResultTable(id="logit_periodicity")
            with TabPane("Neuron FT", id="view-neuronft"):
                yield Heatmap(id="neuron_fourier", empty_text="no neuron transform for this task")

    @property
    def neuron(self) -> int:
        """The neuron whose transform is asked for (the study's default: 0)."""
        return int(self.options.get("neuron", 0))

    @property
    def n_neurons(self) -> int | None:
        t = self.read().table("neuron_clusters")
        return None if t is None else t.n_rows

    def render_result(self, result: StudyResult) -> None:
        r = self.read(result)
        note = r.scalar("note")
        if r.scalar("key_frequencies") is not None:  # a modular task: the periodic structure
            keys = ", ".join(str(k) for k in r.scalar("key_frequencies"))
            if not keys:  # no clear drop in the shares: the largest ones, never all of them
                top = ", ".join(str(k) for k in r.scalar("top_frequencies") or [])
                keys = f"none found (largest shares: {top})" if top else "none found"
            text = (f"key frequencies {keys} · {r.scalar('n_clustered')} neurons clustered · "
                    f"logits off the key terms {fmt_pct(r.scalar('residual_fraction'))} · "
                    f"loss {fmt_num(r.scalar('loss'), 3)}, from key terms only {fmt_num(r.scalar('approx_loss'), 3)}")
            if note:
                text += f"\n{note}"
        else:
            text = note or "no key frequencies in this result"
        self.set_summary(text)
        for table_id in ("frequency_shares", "cluster_sizes", "neuron_clusters", "logit_periodicity"):
            self.query_one(f"#{table_id}", ResultTable).set_table(r.table(table_id))
        freq_norm = r.grid("neuron_freq_norm")
        self.query_one("#neuron_freq_norm", Heatmap).set_grid(
            sort_neurons_by_frequency(freq_norm) if freq_norm is not None else None)
        self._show_transform()
        for table_id, title in (("embedding_norms", "W_E norm per Fourier component"),
                                ("w_logit_norms", "W_logit norm per Fourier component")):
            plot = self.query_one(f"#{table_id}", BarPlot)
            if r.table(table_id) is None:
                plot.set_bars([], {}, title=f"{title}: not computed for this task")
            else:
                plot.set_bars(r.column(table_id, "component"), {"norm": r.column(table_id, "norm")}, title=title)

    def _show_transform(self) -> None:
        """The neuron's 2-D transform, its constant term left out of the colours (or not)."""
        grid = self.read().grid("neuron_fourier")
        heatmap = self.query_one("#neuron_fourier", Heatmap)
        if grid is None:
            heatmap.set_grid(None)
            return
        if self.show_constant:
            heatmap.set_grid(grid, note="with the constant: z leaves it out")
            return
        leave_out = np.zeros(grid.values.shape, dtype=bool)
        leave_out[0, 0] = True  # (Constant, Constant): the neuron's mean
        constant = format_value(float(grid.values[0, 0]))
        heatmap.set_grid(grid, leave_out=leave_out,
                         note=f"constant {constant} left out: z shows it")

    def _ask_for_neuron(self, neuron: int) -> None:
        self.options = {**self.options, "neuron": neuron}
        self.share_option("neuron", neuron)
        self.post_message(self.OptionsChanged(self, dict(self.options)))

    def on_result_table_row_selected(self, event: ResultTable.RowSelected) -> None:
        if event.result_table.id != "neuron_clusters":
            return
        event.stop()
        self._ask_for_neuron(int(event.row["neuron"]))

    def action_step_neuron(self, step: int) -> None:
        n = self.n_neurons
        if n:
            self._ask_for_neuron((self.neuron + step) % n)

    def action_toggle_constant(self) -> None:
        self.show_constant = not self.show_constant
        if self.is_mounted:
            self._show_transform()

    def default_export(self) -> Table | Grid | None:
        name = VIEWS.get(self.active_view(), "embedding_norms")
        schema = SCHEMAS[self.STUDY]
        return self.read().table(name) if name in schema.tables else self.read().grid(name)
