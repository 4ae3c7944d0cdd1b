"""Pilot tests of the study panes and their widgets at 80x24.

Each pane is mounted alone in a tiny App and shown a real StudyResult of a tiny trained
model (tests/tui/conftest.py); the assertions read what the widgets render.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Input, Static, TabbedContent

from grok_engine.results import Grid, StudyResult, Table
from grok_engine.studies import STUDY_MODULES
from grok_tui.panes.ablation import AblationPane, parse_components
from grok_tui.panes.attention import AttentionPane
from grok_tui.panes.base import StudyPane
from grok_tui.panes.embedding import EmbeddingPane
from grok_tui.panes.fourier import FourierPane
from grok_tui.panes.neurons import NeuronsPane
from grok_tui.panes.progress import ProgressPane
from grok_tui.panes.training import TrainingPane
from grok_tui.panes.registry import PANE_CLASSES
from grok_tui.widgets.heatmap import DIVERGING, N_LEVELS, Heatmap, tick_step
from grok_tui.widgets.plots import BarPlot, LinePlot, ScatterPlot
from grok_tui.widgets.result_table import ResultTable

SIZE = (80, 24)
pytestmark = pytest.mark.anyio


class PaneApp(App):
    """Mounts one widget; records every OptionsChanged the pane posts."""

    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.widget = widget
        self.options_changed: list[StudyPane.OptionsChanged] = []

    def compose(self) -> ComposeResult:
        yield self.widget

    def on_study_pane_options_changed(self, message: StudyPane.OptionsChanged) -> None:
        self.options_changed.append(message)


@asynccontextmanager
async def showing(pane: StudyPane, result: StudyResult):
    """``pane`` mounted alone at SIZE and shown ``result``, focused as in the app (the pane
    itself): yields (app, pilot)."""
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        await pilot.pause()
        pane.can_focus = True
        pane.focus()
        await pilot.pause()
        yield app, pilot


def text_of(widget: Widget) -> str:
    """What ``widget`` renders now, as plain text lines."""
    w, h = widget.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, w, h)))


def static_text(widget: Static) -> str:
    return str(widget.render())


def column(table: Table, name: str) -> list:
    return np.asarray(table.columns[name]).tolist()


# -- registry and contract ------------------------------------------------------------------
def test_registry_lists_the_panes_in_key_order():
    assert [c.KEY for c in PANE_CLASSES] == ["2", "3", "4", "5", "6", "7"]
    assert [c.STUDY for c in PANE_CLASSES] == ["embedding", "attention", "neurons", "ablation",
                                               "fourier", "progress"]
    for cls in PANE_CLASSES:
        assert cls.TITLE
        assert all(extra in STUDY_MODULES for extra in cls.EXTRA_STUDIES)
        for binding in cls._merged_bindings.key_to_bindings.values():
            assert all(b.description for b in binding), cls


def _keys(cls) -> set[str]:
    """Keys bound in ``cls.BINDINGS`` itself (not inherited), each alias separately."""
    keys = set()
    for b in cls.__dict__.get("BINDINGS", []):
        keys.update(k.strip() for k in b.key.split(","))
    return keys


def test_pane_keys_leave_the_app_keys_alone():
    """A key bound in a pane or widget shadows the app's while focus is inside it; only the
    arrows (the cursor of a table or map) may, since h/l also step checkpoints."""
    from grok_tui.app import GrokApp
    from grok_tui.screens.run import RunScreen

    app_keys = _keys(GrokApp) | _keys(RunScreen) | {str(n) for n in range(1, 10)}
    ours = set().union(_keys(StudyPane), _keys(Heatmap), _keys(ResultTable), *(_keys(c) for c in PANE_CLASSES))
    assert ours & app_keys <= {"left", "right"}


@pytest.mark.parametrize("cls", [*PANE_CLASSES, TrainingPane], ids=lambda c: c.__name__)
async def test_v_is_shown_only_where_it_changes_the_view(cls, study_results):
    """A pane advertises `v` (Next view) only when it has views, and there `v` shows the next."""
    pane = cls()
    async with showing(pane, study_results[cls.STUDY]) as (app, pilot):
        shown = {key for key, active in app.screen.active_bindings.items() if active.binding.show}
        has_views = bool(pane.query(TabbedContent))
        assert ("v" in shown) == has_views
        if has_views:
            before = pane.active_view()
            await pilot.press("v")
            assert pane.active_view() != before


@pytest.mark.parametrize("cls, view, table_id", [
    (FourierPane, "view-clusters", "cluster_sizes"),
    (AttentionPane, "", "mean_pattern"),
    (NeuronsPane, "", "ranking"),
    (AblationPane, "", "failures-table"),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
async def test_side_tables_are_as_wide_as_their_columns(cls, view, table_id, study_results):
    """A table beside a map is sized to its columns: a fixed width cut the last digit
    (cluster sizes 116, 146 showed as 11, 14)."""
    pane = cls()
    async with showing(pane, study_results[cls.STUDY]) as (app, pilot):
        if view:
            pane.query_one(TabbedContent).active = view
            await pilot.pause()
        table = pane.query_one(f"#{table_id}", ResultTable)
        assert table.scrollable_content_region.width >= table.virtual_size.width > 0
        header = text_of(table).splitlines()[0]
        assert all(name in header for name in table.column_names)


# -- embedding --------------------------------------------------------------------------------
async def test_embedding_pane_shows_pca_table_scatter_and_spectrum(study_results):
    result = study_results["embedding"]
    pane = EmbeddingPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        await pilot.pause()
        pca = pane.query_one("#pca", ResultTable)
        assert pca.row_count == result.tables["pca"].n_rows
        ratio = column(result.tables["pca"], "explained_ratio")
        assert pca.raw_row(0)["explained_ratio"] == pytest.approx(ratio[0])
        rendered = text_of(pca)
        assert "cumulative_ratio" in rendered and f"{ratio[0]:.4g}" in rendered
        summary = static_text(pane.query_one("#summary", Static))
        assert f"{100 * result.scalars['pc1_ratio']:.1f}%" in summary
        assert pane.border_title == "2 Embedding" and pane.border_subtitle == f"epoch {result.epoch}"

        scatter = pane.query_one("#pc1_pc2", ScatterPlot)
        assert scatter.x == pytest.approx(column(result.tables["pc1_pc2"], "pc1"))
        spectrum = pane.query_one("#singular_values", LinePlot)
        assert [s.name for s in spectrum.series] == ["W_E", "random"]

        pane.focus()  # a pane focuses its first table
        await pilot.pause()
        assert pca.has_focus and pane.export_target() is result.tables["pca"]
        await pilot.press("v")  # next view: the scatter plot
        await pilot.pause()
        assert pane.active_view() == "view-scatter"
        assert scatter.display and "PC1" in text_of(scatter)
        pane.screen.set_focus(None)
        assert pane.export_target() is result.tables["pc1_pc2"]


# -- attention --------------------------------------------------------------------------------
async def test_attention_pane_cycles_heads_and_targets(study_results):
    result = study_results["attention"]
    pane = AttentionPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        await pilot.pause()
        table = pane.query_one("#mean_pattern", ResultTable)
        assert table.row_count == result.scalars["n_heads"]
        heatmap = pane.query_one("#head_map", Heatmap)
        assert heatmap.grid is result.grids["head0_to_a"]
        assert "Head 0: attention from '=' to a" in text_of(heatmap)

        heatmap.focus()
        await pilot.press("t")
        assert heatmap.grid is result.grids["head0_to_b"]
        await pilot.press("x")
        assert heatmap.grid is result.grids["head1_to_b"]
        await pilot.press("x")  # two heads: back to head 0
        assert heatmap.grid is result.grids["head0_to_b"]
        assert pane.export_target() is result.grids["head0_to_b"]


# -- training ---------------------------------------------------------------------------------
async def test_training_pane_marks_the_phase_ends_and_says_where_they_come_from(study_results):
    from grok_engine.studies.curves import PHASES
    from grok_tui.panes.training import TrainingPane, phase_marks

    result = study_results["curves"]  # the tiny run: no progress cache yet when it was made
    phases = StudyResult("curves", 6, tables={"phases": Table("phases", {
        "phase": list(PHASES), "start_epoch": [0, 2, None], "end_epoch": [2, None, None]})},
        scalars={"phases_source": "progress measures"})
    assert phase_marks(phases) == [("memorization", 2)]  # the ends, not the starts
    pane = TrainingPane()
    app = PaneApp(pane)
    async def phases_label(previous: str = "") -> str:
        """The label once the pane's (throttled, deferred) redraw has changed it: a fixed
        0.3 s pause missed it on a loaded CI machine."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
            label = static_text(pane.query_one("#phases-label", Static))
            if label and label != previous:
                return label
        return static_text(pane.query_one("#phases-label", Static))

    async with app.run_test(size=SIZE) as pilot:
        pane.show(phases)
        label = await phases_label()
        assert label.startswith("phase ends from progress measures:") and "memorization 2" in label
        pane.show(result)
        marks = phase_marks(result)
        label = await phases_label(label)
        if marks:
            assert label.startswith(f"phase ends from {result.scalars['phases_source']}:")
        else:
            assert label == "no grokking phase reached yet"


# -- neurons ----------------------------------------------------------------------------------
async def test_neurons_pane_shows_its_ranking_while_the_probe_is_still_computing(study_results):
    """The study comes first (ResultReady with the probe pending), the probe's R² after
    (ExtraReady); the R² of the checkpoint before never stands beside the new ranking."""
    result, probe = study_results["neurons"], study_results["probe"]
    pane = NeuronsPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        pane.show_extra("probe", probe)
        await pilot.pause()
        assert f"{probe.scalars['r2']:.4g}" in static_text(pane.query_one("#summary", Static))
        pane.expect_extras(("probe",))  # the next checkpoint: its probe is on its way
        pane.show(result)
        await pilot.pause()
        summary = static_text(pane.query_one("#summary", Static))
        assert "linear probe R² computing…" in summary and f"{probe.scalars['r2']:.4g}" not in summary
        assert pane.query_one("#ranking", ResultTable).row_count == result.tables["ranking"].n_rows
        pane.extra_failed("probe", "probe: singular")
        await pilot.pause()
        assert "computing" not in static_text(pane.query_one("#summary", Static))
        pane.expect_extras(("probe",))
        pane.show(result)
        pane.show_extra("probe", probe)
        await pilot.pause()
        summary = static_text(pane.query_one("#summary", Static))
        assert f"{probe.scalars['r2']:.4g}" in summary and "computing" not in summary


async def test_neurons_pane_ranks_neurons_and_asks_for_the_selected_one(study_results, tiny_context):
    result = study_results["neurons"]
    probe = study_results["probe"]
    ranking = result.tables["ranking"]
    pane = NeuronsPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        pane.show_extra("probe", probe)
        await pilot.pause()
        table = pane.query_one("#ranking", ResultTable)
        assert table.row_count == ranking.n_rows
        assert table.raw_row(0)["neuron"] == column(ranking, "neuron")[0]
        first_line = text_of(table).splitlines()[1]
        assert first_line.split()[:2] == ["1", str(column(ranking, "neuron")[0])]
        summary = static_text(pane.query_one("#summary", Static))
        assert f"{probe.scalars['r2']:.4g}" in summary
        assert f"{result.scalars['n_above']} of {ranking.n_rows}" in summary
        # a modular task: ranked by the fraction one frequency explains, not by |r|
        assert result.scalars["ranked_by"] == "frequency_fraction"
        assert "neurons have one frequency explaining > 85.0% of their variance" in summary
        assert "|r|" not in summary
        info = static_text(pane.query_one("#neuron-info", Static))
        assert f"neuron {result.scalars['neuron']}" in info and f"{result.scalars['fit_r2']:.3g}" in info
        assert (f"frequency {result.scalars['neuron_frequency']} explains "
                f"{100 * result.scalars['neuron_frac_explained']:.1f}%") in info

        # Select the second-ranked neuron: the pane asks for it, the app recomputes.
        table.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        second = column(ranking, "neuron")[1]
        assert [m.options for m in app.options_changed] == [{"neuron": second}]

        from grok_engine.studies import run_study

        recomputed = run_study("neurons", tiny_context, neuron=second)
        pane.show(recomputed)
        await pilot.pause()
        assert table.raw_row(table.cursor_row)["neuron"] == second  # cursor kept
        pre = pane.query_one("#pre", Heatmap)
        assert pre.grid is recomputed.grids["pre"] and f"Neuron {second}" in text_of(pre)

        # The pre-activation map's cursor line follows the arrow keys.
        pre.focus()
        await pilot.pause()
        before = pre.status_text
        assert before.startswith("a=0  b=0")
        await pilot.press("right")
        assert pre.status_text.startswith("a=0  b=1") and pre.status_text != before
        assert f"{recomputed.grids['pre'].values[0, 1]:.4g}" in text_of(pre)


# -- ablation ---------------------------------------------------------------------------------
def test_parse_components_accepts_lists_and_rejects_out_of_range():
    assert parse_components("2,1, 2", 7) == (1, 2)
    for bad in ("9", "0", "a", "", "1,,x"):
        with pytest.raises(ValueError):
            parse_components(bad, 7)


async def test_ablation_pane_validates_the_kept_components(study_results, tiny_context):
    result = study_results["ablation"]
    pane = AblationPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        await pilot.pause()
        summary = static_text(pane.query_one("#summary", Static))
        assert f"{100 * result.scalars['acc_after']:.1f}%" in summary
        assert f"{result.scalars['n_failures']} of {result.scalars['n_rows']}" in summary
        failures = pane.query_one("#failures-table", ResultTable)
        assert failures.row_count == result.scalars["n_failures"]
        assert pane.query_one("#failures-map", Heatmap).grid is result.grids["failures"]

        keep = pane.query_one("#keep", Input)
        error = pane.query_one("#keep-error", Static)
        keep.focus()
        keep.value = ""
        await pilot.press("9", "enter")
        await pilot.pause()
        assert app.options_changed == []
        assert "out of range" in static_text(error) and "1..7" in static_text(error)

        keep.value = ""
        await pilot.press("1", ",", "2")
        await pilot.pause()
        assert static_text(error) == ""  # valid as typed
        await pilot.press("enter")
        await pilot.pause()
        assert [m.options for m in app.options_changed] == [{"keep": (1, 2)}]
        assert failures.has_focus  # keys belong to the pane again, not the input

        await pilot.press("i")  # back to the input; Escape leaves it without applying
        assert keep.has_focus
        await pilot.press("3", "escape")
        assert failures.has_focus and len(app.options_changed) == 1

        from grok_engine.studies import run_study

        pane.show(run_study("ablation", tiny_context, keep=(1, 2)))
        await pilot.pause()
        assert "keeping PC1, PC2" in static_text(pane.query_one("#summary", Static))


# -- fourier ----------------------------------------------------------------------------------
async def test_fourier_pane_shows_key_frequencies_and_norms(study_results):
    result = study_results["fourier"]
    pane = FourierPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        await pilot.pause()
        summary = static_text(pane.query_one("#summary", Static))
        if result.scalars["key_frequencies_found"]:
            keys = ", ".join(str(k) for k in result.scalars["key_frequencies"])
            assert f"key frequencies {keys} ·" in summary
        else:  # 6 epochs: no clear drop, so none is key and the five largest shares are named
            top = ", ".join(str(k) for k in result.scalars["top_frequencies"])
            assert f"key frequencies none found (largest shares: {top}) ·" in summary
        bars = pane.query_one("#embedding_norms", BarPlot)
        assert bars.categories == [str(c) for c in result.tables["embedding_norms"].columns["component"]]
        assert bars.values["norm"] == pytest.approx(column(result.tables["embedding_norms"], "norm"))
        sizes = pane.query_one("#cluster_sizes", ResultTable)
        assert sizes.row_count == result.tables["cluster_sizes"].n_rows
        await pilot.press("v", "v")
        assert pane.active_view() == "view-clusters"
        assert pane.export_target() is result.tables["cluster_sizes"]
        # Enter on a neuron asks for its 2-D Fourier transform
        clusters = pane.query_one("#neuron_clusters", ResultTable)
        clusters.focus()
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        neuron = column(result.tables["neuron_clusters"], "neuron")[2]
        assert [m.options for m in app.options_changed] == [{"neuron": neuron}]


async def test_fourier_freq_map_sorts_the_neurons_by_their_frequency(study_results):
    result = study_results["fourier"]
    pane = FourierPane()
    async with showing(pane, result):
        original = result.grids["neuron_freq_norm"]
        shown = pane.query_one("#neuron_freq_norm", Heatmap).grid
        assert "sorted by frequency" in shown.title
        best = np.asarray(shown.values).argmax(axis=0)
        assert (np.diff(best) >= 0).all()  # blocks of one frequency, in frequency order
        assert sorted(shown.col_labels) == list(original.col_labels)
        for j, neuron in enumerate(shown.col_labels):  # each column is its neuron's, labelled
            assert np.array_equal(shown.values[:, j], original.values[:, neuron])
        frac = np.asarray(shown.values).max(axis=0)
        for f in set(best.tolist()):  # within a block, the best explained first
            assert (np.diff(frac[best == f]) <= 0).all()


async def test_fourier_neuron_transform_steps_neurons_and_leaves_out_the_constant(study_results, tiny_context):
    from grok_engine.studies import run_study

    result = study_results["fourier"]
    pane = FourierPane()
    async with showing(pane, result) as (app, pilot):
        heatmap = pane.query_one("#neuron_fourier", Heatmap)
        grid = result.grids["neuron_fourier"]
        assert heatmap.grid is grid and heatmap._left_out[0, 0] and heatmap._left_out.sum() == 1
        assert f"constant {grid.values[0, 0]:.4g} left out: z shows it" in heatmap.note
        rest = np.abs(np.asarray(grid.values, dtype=float)).ravel()[1:]
        assert heatmap._vmax == pytest.approx(rest.max())  # the colours span the rest
        await pilot.press("z")
        assert not heatmap._left_out.any() and "with the constant" in heatmap.note
        await pilot.press("z", "x", "x", "X", "x")
        assert [m.options for m in app.options_changed] == [{"neuron": 1}, {"neuron": 2}, {"neuron": 1},
                                                            {"neuron": 2}]
        pane.show(run_study("fourier", tiny_context, neuron=2))
        await pilot.pause()
        assert "neuron 2" in heatmap.grid.title and heatmap._left_out[0, 0]
        await pilot.press("X", "X", "X")  # wraps around to the last neuron
        assert app.options_changed[-1].options == {"neuron": result.tables["neuron_clusters"].n_rows - 1}


class TwoPanes(App):
    """The Neurons and the Fourier pane on one screen, as in the app."""

    def compose(self) -> ComposeResult:
        yield NeuronsPane()
        yield FourierPane()


async def test_the_neuron_picked_in_the_ranking_is_the_fourier_panes_too(study_results, tiny_context):
    from grok_engine.studies import run_study

    app = TwoPanes()
    async with app.run_test(size=(80, 48)) as pilot:
        neurons, fourier = app.query_one(NeuronsPane), app.query_one(FourierPane)
        neurons.show(study_results["neurons"])
        fourier.show(study_results["fourier"])
        await pilot.pause()
        ranking = neurons.query_one("#ranking", ResultTable)
        ranking.focus()
        await pilot.press("down", "down", "enter")
        picked = ranking.raw_row(2)["neuron"]
        assert neurons.options == {"neuron": picked} and fourier.options == {"neuron": picked}
        fourier.can_focus = True
        fourier.focus()
        await pilot.press("x")
        following = (picked + 1) % study_results["neurons"].tables["ranking"].n_rows
        assert fourier.options == {"neuron": following} and neurons.options == {"neuron": following}
        # the Neurons pane shows it when recomputed, its ranking's cursor on its row
        neurons.show(run_study("neurons", tiny_context, neuron=following))
        await pilot.pause()
        assert ranking.raw_row(ranking.cursor_row)["neuron"] == following


async def test_fourier_pane_on_integer_addition_says_why_views_are_empty(add_fourier_result):
    pane = FourierPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(add_fourier_result)
        await pilot.pause()
        assert "not periodic" in static_text(pane.query_one("#summary", Static))
        assert pane.query_one("#w_logit_norms", BarPlot).values == {}
        assert pane.query_one("#neuron_fourier", Heatmap).grid is None


# -- progress ---------------------------------------------------------------------------------
async def test_progress_pane_plots_measures_with_phase_lines_and_marker(study_results):
    result = study_results["progress"]
    measures = result.tables["measures"]
    pane = ProgressPane()
    app = PaneApp(pane)
    async with app.run_test(size=SIZE) as pilot:
        pane.show(result)
        # the tiny run never grokked: give the pane a curves result that has phase ends
        pane.show_extra("curves", StudyResult("curves", 6, scalars={
            "memorization_end": 3, "circuit_formation_end": None, "cleanup_end": None}))
        pane.set_selected_epoch(3)
        await pilot.pause()
        plot = pane.query_one("#measures-plot", LinePlot)
        losses = [c for c in measures.column_names if c.endswith("_loss")]
        assert [s.name for s in plot.series] == losses
        assert [(v.x, v.label) for v in plot.vlines] == [(3.0, "memorization")]
        assert plot.marker is not None and plot.marker.x == 3.0
        summary = static_text(pane.query_one("#summary", Static))
        assert "memorization 3" in summary and "selected epoch 3" in summary
        assert f"{result.scalars['n_checkpoints']} checkpoints" in summary

        await pilot.press("m")
        others = [c for c in measures.column_names if c != "epoch" and not c.endswith("_loss")]
        assert [s.name for s in plot.series] == [others[0]]
        assert plot.series[0].y == pytest.approx(column(measures, others[0]))
        await pilot.press("v")
        assert pane.query_one("#cos_sim", Heatmap).grid is result.grids["cos_sim"]
        assert pane.export_target() is result.grids["cos_sim"]

        # Coefficients: a line per key frequency over the checkpoints, then the largest of
        # the others, with the same phase lines and marker
        coeffs = result.tables["cos_coeffs"]
        keys = result.scalars["key_frequencies"]
        lines = pane.query_one("#cos_coeffs", LinePlot)
        assert [s.name for s in lines.series] == [f"freq {k}" for k in keys] + ["largest other |coef|"]
        for k, series in zip(keys, lines.series):
            assert series.y == pytest.approx(column(coeffs, f"freq_{k}"))
            assert list(series.x) == column(coeffs, "epoch")
        others = [c for c in coeffs.column_names if c.startswith("freq_") and int(c[5:]) not in keys]
        largest = np.abs(np.array([column(coeffs, c) for c in others])).max(axis=0)
        assert np.asarray(lines.series[-1].y) == pytest.approx(largest)
        assert [v.x for v in lines.vlines] == [3.0] and lines.marker.x == 3.0
        await pilot.press("v", "v")
        assert pane.active_view() == "view-coeffs" and pane.export_target() is coeffs


# -- heatmap ----------------------------------------------------------------------------------
def big_grid(n: int = 113) -> Grid:
    a = np.arange(n)
    values = np.cos(2 * np.pi * 5 * (a[:, None] + a[None, :]) / n)
    values[:, 0] = np.nan
    return Grid("big", values, "a", "b", a.tolist(), a.tolist(), title="cos(w(a+b))")


async def test_heatmap_shows_a_113_grid_at_full_resolution_and_scrolls_with_the_cursor():
    grid = big_grid()
    heatmap = Heatmap(grid)
    app = PaneApp(heatmap)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = text_of(heatmap).splitlines()
        assert len(lines) == 24 and all(len(line) == 80 for line in lines)
        assert lines[0].startswith(" cos(w(a+b))")
        assert lines[1].lstrip().startswith("a\\b 0")
        status = heatmap.status_text
        assert status.startswith("a=0  b=0  NaN")
        assert any(status in line for line in lines)
        # one character per column and two rows per line, nothing averaged: 76 of the
        # columns and 38 of the rows are in view, and the view says so
        assert heatmap.visible_rows == (0, 38) and heatmap.visible_cols == (0, 76)
        assert "in view: a 0..37 of 113, b 0..75 of 113" in heatmap.view_text
        assert any(heatmap.view_text in line for line in lines)
        assert "▀" in lines[2] and "mean" not in text_of(heatmap)
        # each drawn character is the colour of one value: row 2's line shows rows 4 and 5
        strip = heatmap.render_line(4)
        cells = [seg for seg in strip if seg.text == "▀"]
        top = [tuple(seg.style.color.get_truecolor()) for seg in cells[:10]]
        expected = [DIVERGING[lev] for lev in heatmap._levels(grid.values[4, 1:11])]
        assert top == expected
        heatmap.focus()
        await pilot.press("right", "down")
        assert heatmap.status_text.startswith(f"a=1  b=1  {grid.values[1, 1]:.4g}")
        await pilot.press("ctrl+end")
        assert (heatmap.cursor_row, heatmap.cursor_col) == (112, 112)
        # the view followed the cursor, and the labels follow the view
        assert heatmap.visible_rows[1] == 113 and heatmap.visible_cols == (37, 113)
        lines = text_of(heatmap).splitlines()
        assert lines[1].split()[1] == "40"  # the first labelled column in view
        assert lines[2 + 18].lstrip().startswith("112")
        assert "a 76..112 of 113, b 37..112 of 113" in heatmap.view_text
        await pilot.press("ctrl+home")
        assert heatmap.visible_rows == (0, 38) and heatmap.visible_cols == (0, 76)


async def test_a_narrow_scrolled_heatmap_keeps_its_colour_bar():
    heatmap = Heatmap(big_grid())
    app = PaneApp(heatmap)
    async with app.run_test(size=(34, 20)) as pilot:
        await pilot.pause()
        lines = text_of(heatmap).splitlines()
        assert heatmap.view_text and any(heatmap.view_text[:30] in line for line in lines)
        assert any(line.rstrip().endswith("-1        1") for line in lines)  # the colour bar


async def test_heatmap_column_labels_are_never_cut():
    """113 columns in 76 characters: a label every 5 columns, each whole (108, not "10")."""
    assert [tick_step(3, 1), tick_step(2, 1), tick_step(1, 2), tick_step(3, 2), tick_step(8, 1)] == [5, 5, 1, 2, 10]
    a = np.arange(113)
    grid = Grid("g", np.zeros((8, 113)), "a", "b", list(range(8)), a.tolist())
    heatmap = Heatmap(grid)
    app = PaneApp(heatmap)
    async with app.run_test(size=(120, 16)) as pilot:
        await pilot.pause()
        ticks = text_of(heatmap).splitlines()[1]
        labels = ticks.split()[1:]
        assert labels == [str(k) for k in range(0, 113, 5)]  # ... 100 105 110, every one whole
        gutter = ticks.index("0")
        for label in labels:  # each label starts at its column
            assert ticks[gutter + int(label):].startswith(label)


async def test_heatmap_leaves_values_out_of_the_colour_scale_and_says_so():
    values = np.array([[80.0, 1.0], [-2.0, 0.5]])
    grid = Grid("ft", values, "a", "b", ["Const", "cos 1"], ["Const", "cos 1"], title="transform")
    leave_out = np.zeros((2, 2), dtype=bool)
    leave_out[0, 0] = True
    heatmap = Heatmap()
    app = PaneApp(heatmap)
    async with app.run_test(size=(60, 10)) as pilot:
        heatmap.set_grid(grid, leave_out=leave_out, note="constant term left out")
        await pilot.pause()
        lines = text_of(heatmap).splitlines()
        assert lines[0].startswith(" transform · constant term left out")
        assert lines[0].rstrip().endswith("-2        2")  # the scale of what is drawn
        assert heatmap._level_grid[0, 0] == -1  # blank
        assert heatmap.status_text == "a=Const  b=Const  80  (left out of the colours)"


async def test_heatmap_small_grid_uses_square_cells_and_click_moves_cursor():
    values = np.array([[-1.0, 0.0, 2.0], [np.nan, 0.5, -2.0]])
    grid = Grid("small", values, "head", "source", [0, 1], ["a", "b", "="], title="small")
    heatmap = Heatmap(grid)
    app = PaneApp(heatmap)
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        lines = text_of(heatmap).splitlines()
        # "head\\source" is too wide for the gutter: the row axis there, the column axis after
        # the ticks; then two characters per value; the cursor is "[]"
        gutter = len("head") + 1
        assert lines[1][:gutter].strip() == "head" and lines[1][gutter:].startswith("a b =  (source)")
        assert lines[2][gutter:gutter + 6] == "[]    "
        assert lines[3][gutter:gutter + 2] == "  "  # NaN is blank
        assert "(" not in heatmap.status_text  # not downsampled
        assert lines[0].startswith(" small ") and lines[0].rstrip().endswith("-2        2")  # colour bar
        # colours: zero is the middle of the diverging map, 2 and -2 its ends
        middle = heatmap._style(-1, N_LEVELS // 2).bgcolor.get_truecolor()
        assert tuple(middle) == DIVERGING[N_LEVELS // 2]
        assert heatmap._levels(np.array([-2.0, 0.0, 2.0])).tolist() == [0, N_LEVELS // 2, N_LEVELS - 1]

        await pilot.click(heatmap, offset=(gutter + 4, 3))  # value [1, 2]
        assert (heatmap.cursor_row, heatmap.cursor_col) == (1, 2)
        assert heatmap.status_text == "head=1  source==  -2"
        assert heatmap.has_focus


# -- result table -----------------------------------------------------------------------------
async def test_result_table_sorts_raw_values_with_nan_last():
    table = Table("t", {"name": ["x", "y", "z", "w"], "value": [10.0, 9.0, float("nan"), 100.0]})
    widget = ResultTable()
    app = PaneApp(widget)
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(table)
        await pilot.pause()

        def order() -> list[str]:
            return [widget.raw_row(i)["name"] for i in range(widget.row_count)]

        widget.focus()
        await pilot.press("S", "S")  # sort by "name", then by "value"
        assert widget.sort_column == "value" and order() == ["y", "x", "w", "z"]
        await pilot.press("R")
        assert order() == ["w", "x", "y", "z"]  # descending, NaN still last
        header = text_of(widget).splitlines()[0]
        assert "value ▼" in header
        assert "1e+02" not in text_of(widget) and "100" in text_of(widget)
        # clicking a header sorts by it
        await pilot.click(widget, offset=(2, 0))
        assert widget.sort_column == "name" and order() == ["w", "x", "y", "z"]
        # re-showing the same table keeps the sort and the cursor row
        widget.move_cursor(row=2)
        kept = widget.raw_row(2)["name"]
        widget.set_table(table)
        assert widget.sort_column == "name" and widget.raw_row(widget.cursor_row)["name"] == kept


# -- plots ------------------------------------------------------------------------------------
async def wait_built(app, pilot, plot) -> None:
    """Until the plot shows the figure of its current data (built on a worker thread)."""
    for _ in range(100):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not plot.build_pending:
            return
    raise AssertionError("the plot was never built")


async def test_log_line_plot_builds_again_after_the_first_build():
    """plotext logs a log axis' data in place on build; each build starts from a clear figure."""
    from grok_tui.widgets.plots import Series, VLine

    plot = LinePlot()
    app = PaneApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        plot.set_data([Series("test_loss", [0, 50, 100, 150], [2.6, 0.5, 1e-3, 1e-5])],
                      title="losses", log_y=True, vlines=[VLine(100, "memorization")])
        plot.set_marker(VLine(150, "selected", "red"))
        await wait_built(app, pilot, plot)
        first = text_of(plot)
        assert "losses" in first
        for _ in range(2):  # a second and third build of the same data
            plot._figures.clear()  # else the figure built before is shown again, unbuilt
            plot.redraw()
            await wait_built(app, pilot, plot)
            assert text_of(plot) == first


async def test_data_shown_before_shows_its_figure_again_without_a_build():
    """Stepping back to a checkpoint draws the same data: the figure built for it is reused
    (a plotext build is tens of ms of Python), and any change of the data builds anew."""
    from grok_tui.widgets.plots import Series, VLine

    plot = LinePlot()
    app = PaneApp(plot)
    builds: list[int] = []
    async with app.run_test(size=SIZE) as pilot:
        build = plot.plt.build
        plot.plt.build = lambda: (builds.append(1), build())[1]
        a = [Series("test_loss", [0, 50, 100], [2.6, 0.5, 1e-3])]
        b = [Series("test_loss", [0, 50, 100], [2.6, 0.4, 1e-3])]
        plot.set_data(a, title="losses", log_y=True)
        plot.set_marker(VLine(50, "selected", "red"))
        await wait_built(app, pilot, plot)
        at_50 = text_of(plot)
        plot.set_marker(VLine(100, "selected", "red"))
        await wait_built(app, pilot, plot)
        assert len(builds) == 2 and text_of(plot) != at_50
        plot.set_marker(VLine(50, "selected", "red"))  # back: the same data as the first
        await pilot.pause()
        assert not plot.build_pending and text_of(plot) == at_50 and len(builds) == 2
        plot.set_data(b, title="losses", log_y=True)  # other data: built
        await wait_built(app, pilot, plot)
        assert len(builds) == 3


async def test_plots_build_off_the_ui_thread_and_show_only_the_latest_data():
    import threading

    from grok_tui.widgets.plots import Series

    plot = LinePlot()
    app = PaneApp(plot)
    builders: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        build = plot.plt.build

        def recording_build():
            builders.append(threading.current_thread().name)
            return build()

        plot.plt.build = recording_build
        plot.set_data([Series("a", [0, 1], [0, 1])], title="first")
        await pilot.pause()
        plot.set_data([Series("a", [0, 1], [1, 0])], title="second")
        plot.set_data([Series("a", [0, 1], [1, 2])], title="third")
        await wait_built(app, pilot, plot)
        shown = text_of(plot)
        assert "third" in shown and "second" not in shown and "first" not in shown
        assert builders and threading.main_thread().name not in builders


async def test_log_axis_ticks_read_as_powers_of_ten():
    """plotext's own log ticks read "7.5563460 ... 0.0000001" (and "0.0000000" at p=10)."""
    from grok_tui.widgets.plots import Series

    plot = LinePlot()
    app = PaneApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        plot.set_data([Series("test_loss", [0, 50, 100, 150], [7.556346, 0.5, 1e-4, 2.3e-8])],
                      title="losses", log_y=True)
        await wait_built(app, pilot, plot)
        axis = [line.split("┤")[0].strip() for line in text_of(plot).splitlines() if "┤" in line]
        assert [t for t in axis if t] == ["1e2", "1e0", "1e-2", "1e-4", "1e-6", "1e-8"]
        assert "0.000" not in text_of(plot)


async def test_legend_sits_under_the_figure_and_every_line_has_its_own_colour():
    from grok_tui.widgets.plots import COLOURS, MARKER_COLOUR, PHASE_COLOURS, Series, VLine, phase_lines

    plot = LinePlot()
    app = PaneApp(plot)
    x = list(range(0, 1000, 50))
    names = ["train_loss", "test_loss", "restricted_loss", "excluded_loss"]
    async with app.run_test(size=SIZE) as pilot:
        # the top-left corner is full of data, where plotext puts its legend box
        plot.set_data([Series(n, x, [10.0 / (1 + i + k) for k in range(len(x))]) for i, n in enumerate(names)],
                      title="losses", log_y=True,
                      vlines=phase_lines([("memorization", 100), ("circuit_formation", 300), ("cleanup", 600)]))
        plot.set_marker(VLine(900, "selected", MARKER_COLOUR))
        await wait_built(app, pilot, plot)
        lines = text_of(plot).splitlines()
        bottom = max(i for i, line in enumerate(lines) if "└" in line)
        figure, legend = "\n".join(lines[:bottom]), "\n".join(lines[bottom:])
        for name in [*names, "memorization 100", "circuit formation 300", "cleanup 600", "selected 900"]:
            assert name in legend and name not in figure, name
        # each item's glyph in its own colour: four series, three phases, the marker
        built = plot._built[2]
        colours = [span.style.color.get_truecolor() for span in built.spans
                   if getattr(span.style, "bold", False) and built.plain[span.start:span.end] in ("━━", "┃")]
        expected = [*COLOURS[:4], *PHASE_COLOURS, MARKER_COLOUR]
        assert [tuple(c) for c in colours] == expected
        assert len(set(expected)) == len(expected)
