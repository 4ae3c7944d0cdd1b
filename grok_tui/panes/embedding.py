"""Embedding pane: PCA of W_E, the tokens on PC1 and PC2, singular values vs a random control.

Renders the "embedding" study: table "pca" (component, singular_value, explained_ratio,
cumulative_ratio), "pc1_pc2" (token, pc1, pc2), "singular_values" (index, W_E, random),
"pc_scores" (token, PC1..PCn); scalars pc1_ratio, pc2_ratio, n_components.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static, TabbedContent, TabPane

from grok_engine.results import Grid, StudyResult, Table
from grok_tui.panes.base import NEXT_VIEW, StudyPane, fmt_pct
from grok_tui.widgets.plots import LinePlot, ScatterPlot, Series
from grok_tui.widgets.result_table import ResultTable


class EmbeddingPane(StudyPane):
    STUDY = "embedding"
    TITLE = "Embedding"
    KEY = "2"

    BINDINGS = [NEXT_VIEW]

    def compose(self) -> ComposeResult:
        yield Static("waiting for a checkpoint", id="summary", classes="pane-summary")
        with TabbedContent(id="views"):
            with TabPane("PCA", id="view-pca"):
                yield ResultTable(id="pca")
            with TabPane("PC1 vs PC2", id="view-scatter"):
                yield ScatterPlot(id="pc1_pc2")
            with TabPane("Singular values", id="view-sv"):
                yield LinePlot(id="singular_values")
            with TabPane("Scores", id="view-scores"):
                yield ResultTable(id="pc_scores")

    def render_result(self, result: StudyResult) -> None:
        r = self.read(result)
        together = ""
        cumulative = r.column("pca", "cumulative_ratio")
        if len(cumulative) >= 2:
            together = f" (together {fmt_pct(float(cumulative[1]))})"
        self.set_summary(f"W_E variance: PC1 {fmt_pct(r.scalar('pc1_ratio'))}, PC2 {fmt_pct(r.scalar('pc2_ratio'))}"
                         f"{together} · {r.scalar('n_components')} components")
        self.query_one("#pca", ResultTable).set_table(r.table("pca"))
        self.query_one("#pc_scores", ResultTable).set_table(r.table("pc_scores"))
        self.query_one("#pc1_pc2", ScatterPlot).set_points(
            r.column("pc1_pc2", "pc1"), r.column("pc1_pc2", "pc2"), labels=r.column("pc1_pc2", "token"),
            title="Tokens on PC1 and PC2", xlabel="PC1", ylabel="PC2")
        x = r.column("singular_values", "index")
        self.query_one("#singular_values", LinePlot).set_data(
            [Series(name, x, r.column("singular_values", name)) for name in ("W_E", "random")],
            title="Singular values: W_E vs random", xlabel="index", ylabel="singular value")

    def default_export(self) -> Table | Grid | None:
        names = {"view-pca": "pca", "view-scatter": "pc1_pc2", "view-sv": "singular_values",
                 "view-scores": "pc_scores"}
        return self.read().table(names.get(self.active_view(), "pca"))
