"""Fourier pane: the embedding in the Fourier basis, key frequencies, neuron clusters,
W_logit's frequencies, logit periodicity and one neuron's 2-D transform.

Renders the "fourier" study: tables "embedding_norms" (component, frequency, norm),
"frequency_shares", "neuron_clusters", "cluster_sizes", "w_logit_norms",
"logit_periodicity"; grids "neuron_freq_norm", "neuron_fourier"; scalars key_frequencies
(empty when none is found: the summary then names top_frequencies, the largest shares),
n_clustered, residual_fraction, loss, approx_loss, and ``note`` when the task is not
periodic (integer addition: only the embedding norms exist, the other views say so).

Enter on a row of the neuron clusters table posts ``OptionsChanged(pane, {"neuron": n})``:
the "Neuron FT" view then shows that neuron's 2-D Fourier transform.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static, TabbedContent, TabPane

from grok_engine.results import Grid, StudyResult, Table
from grok_tui.panes.base import StudyPane, fmt_num, fmt_pct
from grok_tui.widgets.heatmap import Heatmap
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


class FourierPane(StudyPane):
    STUDY = "fourier"
    TITLE = "Fourier"
    KEY = "6"

    DEFAULT_CSS = """
    FourierPane #cluster_sizes { width: 24; }
    """

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

    def render_result(self, result: StudyResult) -> None:
        s = result.scalars
        if "key_frequencies" in s:
            keys = ", ".join(str(k) for k in s["key_frequencies"])
            if not keys:  # no clear drop in the shares: the largest ones, never all of them
                top = ", ".join(str(k) for k in s.get("top_frequencies", []))
                keys = f"none found (largest shares: {top})" if top else "none found"
            text = (f"key frequencies {keys} · {s.get('n_clustered', '?')} neurons clustered · "
                    f"logits off the key terms {fmt_pct(s.get('residual_fraction'))} · "
                    f"loss {fmt_num(s.get('loss'), 3)}, from key terms only {fmt_num(s.get('approx_loss'), 3)}")
            if s.get("note"):
                text += f"\n{s['note']}"
        else:
            text = s.get("note", "no key frequencies in this result")
        self.set_summary(text)
        for table_id in ("frequency_shares", "cluster_sizes", "neuron_clusters", "logit_periodicity"):
            self.query_one(f"#{table_id}", ResultTable).set_table(result.tables.get(table_id))
        for grid_id in ("neuron_freq_norm", "neuron_fourier"):
            self.query_one(f"#{grid_id}", Heatmap).set_grid(result.grids.get(grid_id))
        for table_id, title in (("embedding_norms", "W_E norm per Fourier component"),
                                ("w_logit_norms", "W_logit norm per Fourier component")):
            t = result.tables.get(table_id)
            plot = self.query_one(f"#{table_id}", BarPlot)
            if t is None:
                plot.set_bars([], {}, title=f"{title}: not computed for this task")
            else:
                plot.set_bars(t.columns["component"], {"norm": t.columns["norm"]}, title=title)

    def on_result_table_row_selected(self, event: ResultTable.RowSelected) -> None:
        if event.result_table.id != "neuron_clusters":
            return
        event.stop()
        self.options = {**self.options, "neuron": int(event.row["neuron"])}
        self.post_message(self.OptionsChanged(self, dict(self.options)))

    def default_export(self) -> Table | Grid | None:
        if self.result is None:
            return None
        name = VIEWS.get(self.active_view(), "embedding_norms")
        return self.result.tables.get(name) or self.result.grids.get(name)
