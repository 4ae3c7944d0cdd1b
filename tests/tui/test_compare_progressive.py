"""The comparison screen loads in two phases (grok_tui/screens/compare_data.py): the curves
and the table at once, then the progress measures run by run. Here on copies of the
committed tiny sweep's runs without their progress cache, with the progress study's
compute function held back per run by a threading.Event, so the tests see the screen
between the phases."""

from __future__ import annotations

import csv
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures import settle

from grok_engine.store import RunStore
from grok_engine.studies import progress as progress_module
from grok_engine.studies.progress import ProgressStopped, cached_measures
from grok_engine.sweep.summary import format_key_frequencies, run_figures
from grok_tui.app import GrokApp
from grok_tui.screens.compare_data import PENDING, PROGRESS_ROWS

pytestmark = pytest.mark.anyio
SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"
IDS = ["tsw-006", "tsw-010"]  # memorisation (no test 99% epoch: "-"), grokking
PROGRESS_LABELS = ("memorization end", "circuit formation end", "cleanup end", "key freqs",
                   "restricted loss", "excluded loss", "weight norm")


@pytest.fixture
def cold_runs(tmp_path) -> Path:
    """The tiny sweep's runs without their analysis folders: phase 2 has to compute."""
    runs = tmp_path / "runs"
    shutil.copytree(SWEEPS, runs, ignore=shutil.ignore_patterns("analysis"))
    assert all(cached_measures(RunStore(runs).open(i)) is None for i in IDS)
    return runs


class Gates:
    """progress_measures held until its run's gate opens; it checks ``should_stop`` while
    it waits, as the real one does between checkpoints."""

    def __init__(self, monkeypatch) -> None:
        self.open = {i: threading.Event() for i in IDS}
        self.started = {i: threading.Event() for i in IDS}
        self.stopped = {i: threading.Event() for i in IDS}
        real = progress_module.progress_measures

        def gated(run, progress_callback=None, save_cache=True, should_stop=None):
            self.started[run.id].set()
            deadline = time.monotonic() + 60  # a test that fails never hangs on its gate
            while not self.open[run.id].wait(0.01):
                if should_stop is not None and should_stop():
                    self.stopped[run.id].set()
                    raise ProgressStopped(run.id)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the gate of {run.id} never opened")
            return real(run, progress_callback=progress_callback, save_cache=save_cache, should_stop=should_stop)

        monkeypatch.setattr(progress_module, "progress_measures", gated)


def held_comparison(monkeypatch, runs: Path, *open_ids: str) -> tuple[Gates, GrokApp]:
    """`grok-tui compare` of IDS with the progress study gated, the gates of ``open_ids`` open."""
    gates = Gates(monkeypatch)
    for run_id in open_ids:
        gates.open[run_id].set()
    return gates, GrokApp(None, runs, compare=IDS)


def comparing(app, first_done: bool = False) -> bool:
    """The comparison is shown with phase 1 in (and phase 2 done with the first run)."""
    screen = app.screen
    return (type(screen).__name__ == "CompareScreen" and bool(screen.runs)
            and not (first_done and screen.runs[0].pending))


async def until(pilot, predicate, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("never came true")


def column(screen, run_id: str) -> dict[str, object]:
    table = screen.query_one("#compare-table").table
    return dict(zip(table.columns["field"], table.columns[run_id]))


def title(screen) -> str:
    return str(screen.query_one("#compare-title").render())


async def test_curves_and_table_first_then_the_progress_measures_run_by_run(cold_runs, monkeypatch):
    from grok_engine.studies.curves import find_phases

    gates, app = held_comparison(monkeypatch, cold_runs)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: comparing(app))
        screen = app.screen
        curves = screen.query_one("#compare-curves")
        progress = screen.query_one("#compare-progress")
        await until(pilot, lambda: not curves.build_pending)
        await until(pilot, gates.started["tsw-006"].is_set)  # phase 2 starts once that is on screen
        # phase 1 on screen, phase 2 held: both ids, both runs' curves, the table
        assert all(i in title(screen) for i in IDS)
        assert "progress measures: 0 of 2 runs in" in title(screen)
        assert sorted(s.name for s in curves.series) == ["tsw-006 test", "tsw-006 train",
                                                         "tsw-010 test", "tsw-010 train"]
        assert all(len(s.x) > 10 for s in curves.series)
        assert progress.series == []
        assert [name for _g, name, _c in progress.legend_items()] == [f"tsw-006 {PENDING}", f"tsw-010 {PENDING}"]
        early = column(screen, "tsw-010")
        assert early["phase"] == "grokking" and early["test 99%"] == 168
        assert column(screen, "tsw-006")["test 99%"] == "-"  # none: not the pending mark
        for label in PROGRESS_LABELS:
            assert early[label] == PENDING, label

        gates.open["tsw-006"].set()  # the first run completes, the second is still held
        await until(pilot, lambda: not screen.runs[0].pending)
        assert "progress measures: 1 of 2 runs in" in title(screen)
        assert [s.name for s in progress.series] == ["tsw-006"]
        assert all(column(screen, "tsw-006")[label] != PENDING for label in PROGRESS_LABELS)
        assert column(screen, "tsw-010")["weight norm"] == PENDING

        gates.open["tsw-010"].set()
        await settle(app, pilot)
        assert "progress measures" not in title(screen) and PENDING not in title(screen)
        assert sorted(s.name for s in progress.series) == IDS
        assert not progress.build_pending
        store = RunStore(cold_runs)
        for run_id in IDS:
            cells = column(screen, run_id)
            assert PENDING not in cells.values()
            run = store.open(run_id)
            measures = cached_measures(run)  # phase 2 left them in the run's cache
            assert measures is not None
            assert cells["weight norm"] == pytest.approx(measures["sum_sq_weights"][-1])
            assert cells["restricted loss"] == pytest.approx(measures["restricted_loss"][-1])
            ends = find_phases(run.metrics(), measures)
            assert cells["cleanup end"] == ("-" if ends.cleanup_end is None else ends.cleanup_end)
            assert cells["memorization end"] == ends.memorization_end  # both runs fit the train set
            keys = run_figures(run, compute=False).key_frequencies  # from the cache phase 2 left
            assert keys is not None and cells["key freqs"] == format_key_frequencies(keys)
            assert cells["key freqs"] == "none" or cells["key freqs"].split()[0].isdigit()


async def test_export_during_phase_2_marks_the_pending_cells(cold_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gates, app = held_comparison(monkeypatch, cold_runs, "tsw-006")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: comparing(app, first_done=True))
        await pilot.press("e", "enter")
        out = tmp_path / "exports" / "compare_tsw-006+tsw-010.csv"
        await until(pilot, out.exists)
        await until(pilot, out.with_name(out.stem + "_curves.csv").exists)
        rows = {r[0]: r[1:] for r in csv.reader(open(out))}
        assert rows["field"] == IDS
        for label in PROGRESS_LABELS:
            assert rows[label][0] != "pending" and rows[label][1] == "pending", label
        assert rows["test 99%"] == ["-", "168"]
        gates.open["tsw-010"].set()
        await settle(app, pilot)


async def test_escape_during_phase_2_stops_it_and_keeps_what_was_computed(cold_runs, monkeypatch):
    gates, app = held_comparison(monkeypatch, cold_runs, "tsw-006")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: comparing(app, first_done=True))
        screen = app.screen
        await until(pilot, gates.started["tsw-010"].is_set)
        await pilot.press("escape")
        # the worker thread leaves at its next check, nothing raised
        await until(pilot, gates.stopped["tsw-010"].is_set, timeout=10)
        await settle(app, pilot)
        workers = [w for w in app.workers if w.node is screen]
        assert all(w.is_finished for w in workers)
        assert all(w.state.name in ("CANCELLED", "SUCCESS") for w in workers if w.group == "compare")
        assert app._exception is None
        assert type(app.screen).__name__ == "RunPickerScreen"  # `grok-tui compare`: Escape opens the picker
        store = RunStore(cold_runs)
        assert cached_measures(store.open("tsw-006")) is not None  # done before Escape: cached
        assert cached_measures(store.open("tsw-010")) is None
        assert screen.runs[1].pending

        # back on the comparison (the picker dismissed): phase 2 goes on with tsw-010
        gates.open["tsw-010"].set()
        app.pop_screen()
        await until(pilot, lambda: not screen.pending())
        await settle(app, pilot)
        assert cached_measures(store.open("tsw-010")) is not None
        assert "progress measures" not in title(screen)


def test_progress_rows_are_rows_of_the_table():
    from grok_tui.screens.compare_data import FIGURE_ROWS

    attrs = dict(FIGURE_ROWS)
    assert {attrs[label] for label in PROGRESS_LABELS} == PROGRESS_ROWS
