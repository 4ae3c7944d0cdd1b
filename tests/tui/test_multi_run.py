"""Pilot tests of the multi-run screens on the committed tiny sweep (tests/data/sweeps,
make_tiny_sweep.py: ``tsw``, 12 members over lr x weight-decay x frac-train) beside the
tiny run: the run picker's columns, filter, sort and marks, the sweep screen's diagram,
members table and member screens, the comparison screen."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.fixtures import copy_tiny_run, settle

from grok_tui.app import GrokApp  # noqa: E402

pytestmark = pytest.mark.anyio
SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"


@pytest.fixture
def sweep_runs(tmp_path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(SWEEPS, runs)
    copy_tiny_run(runs, "tiny")
    return runs


def cells(table, i):
    return [c.plain for c in table.get_row_at(i)]


def shown_ids(table):
    return [cells(table, i)[1] for i in range(table.row_count)]


async def test_picker_shows_hyperparameters_and_sweeps(sweep_runs):
    app = GrokApp(None, sweep_runs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 14  # the sweep, its 12 members, tiny
        sweep = cells(table, 0)
        assert sweep[1] == "tsw" and sweep[4] == "12/12 done" and sweep[9] == "(sweep)"
        assert sweep[5:9] == ["grid", "grid", "grid", "off"]  # lr, wd, frac are axes
        member = cells(table, shown_ids(table).index("tsw-010"))
        assert member[5:10] == ["0.01", "4", "0.8", "off", "tsw"]


async def test_picker_filters_as_you_type_and_sorts(sweep_runs):
    app = GrokApp(None, sweep_runs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        table = screen.query_one("#runs-table")
        await pilot.press("slash", *"tsw-01")
        assert shown_ids(table) == ["tsw-010", "tsw-011"]
        await pilot.press("ctrl+a", "ctrl+k", *"0.0001 0.9")  # words in different cells
        assert shown_ids(table) == ["tsw-002", "tsw-005"]
        await pilot.press("escape")  # clears the filter, back on the table
        assert table.row_count == 14 and table.has_focus
        for _ in range(11):  # run, task, p, epochs, lr, wd, frac, grokfast, sweep, train acc, test acc
            await pilot.press("S")
        assert screen.sort_column == 11
        await pilot.press("R")  # highest test accuracy first
        assert shown_ids(table)[0] == "tsw-010"
        assert "test acc▼" in str(table.columns[list(table.columns)[11]].label)


async def test_picker_marks_runs_and_opens_the_comparison(sweep_runs):
    app = GrokApp(None, sweep_runs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("#runs-table")
        await pilot.press("c")  # nothing marked: refused, the picker stays
        assert type(app.screen).__name__ == "RunPickerScreen"
        table.move_cursor(row=shown_ids(table).index("tsw-006"))
        await pilot.press("space")  # marks and moves down: tsw-007
        await pilot.press("space")
        assert cells(table, shown_ids(table).index("tsw-006"))[0] == "●"
        await pilot.press("c")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "CompareScreen"
        assert app.screen.run_ids == ["tsw-006", "tsw-007"]


async def test_picker_opens_on_the_open_run(sweep_runs):
    app = GrokApp("tsw-007", sweep_runs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("o")
        await settle(app, pilot)
        table = app.screen.query_one("#runs-table")
        assert cells(table, table.cursor_row)[1] == "tsw-007"


async def test_sweep_screen_diagram_member_and_back(sweep_runs):
    app = GrokApp(None, sweep_runs, sweep_id="tsw")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "SweepScreen"
        diagram = screen.diagram
        assert (diagram.x, diagram.y, diagram.fixed) == ("lr", "weight-decay", {"frac-train": 0.5})
        heat = screen.query_one("#sweep-map")
        assert heat.has_focus
        await pilot.press("f")  # frac-train 0.8
        await pilot.press("right", "down")  # lr 1e-2, weight decay 4
        assert "grokking" in heat.status_text and "tsw-010" in heat.status_text
        assert "tsw-010  grokking" in str(screen.query_one("#sweep-member").render())
        await pilot.press("c")  # colour: test-99% epoch
        assert screen.diagram.mode == "test_99" and "168" in heat.status_text
        await pilot.press("x")  # x: the next axis other than y
        assert screen.diagram.x == "frac-train" and screen.diagram.fixed == {"lr": 1e-4}
        await pilot.press("x", "f", "enter")  # back to lr on x, frac 0.8 fixed: tsw-010
        await settle(app, pilot)
        assert type(app.screen).__name__.endswith("MemberRunScreen")
        assert app.screen.status.run_id == "tsw-010"
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen


async def test_sweep_members_table_filters_opens_and_exports(sweep_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = GrokApp(None, sweep_runs, sweep_id="tsw")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        members = screen.query_one("#sweep-members")
        await pilot.press("slash", *"grokking")
        assert members.row_count == 1 and members.raw_row(0)["run"] == "tsw-010"
        await pilot.press("enter")  # the filter hands over to the table
        assert members.has_focus
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen.status.run_id == "tsw-010"
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.press("enter")
        await settle(app, pilot)
        rows = list(csv.reader(open(tmp_path / "exports" / "sweep_tsw_members.csv")))
        assert rows[0][:4] == ["run", "lr", "weight-decay", "frac-train"] and len(rows) == 2


async def test_compare_screen_columns_baseline_and_export(sweep_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = GrokApp(None, sweep_runs, compare=["tsw-006", "tsw-010", "tsw-011"])
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        table = screen.query_one("#compare-table").table
        assert table.column_names == ["field", "tsw-006", "tsw-010", "tsw-011"]
        fields = table.columns["field"]
        assert fields[:2] == ["frac-train", "weight-decay"]  # lr is the same in all three
        assert table.columns["tsw-010"][fields.index("phase")] == "grokking"
        assert table.columns["tsw-010"][fields.index("test 99%")] == 168
        legend = [name for _m, name, _c in screen.query_one("#compare-curves").legend_items()]
        assert legend == ["tsw-006", "tsw-010", "tsw-011"]
        colours = {name: c for _m, name, c in screen.query_one("#compare-curves").legend_items()}
        await pilot.press("b", "b")  # baseline: tsw-006, then tsw-010
        await settle(app, pilot)
        table = screen.query_one("#compare-table").table
        assert table.column_names[1] == "tsw-010"
        items = screen.query_one("#compare-curves").legend_items()
        assert items[0][1] == "tsw-010 (baseline)" and items[0][2] == colours["tsw-010"]  # same colour
        await pilot.press("e", "enter")
        await settle(app, pilot)
        out = tmp_path / "exports" / "compare_tsw-006+tsw-010+tsw-011.csv"
        rows = list(csv.reader(open(out)))
        assert rows[0] == ["field", "tsw-010", "tsw-006", "tsw-011"]
        curves = list(csv.reader(open(out.with_name(out.stem + "_curves.csv"))))
        assert curves[0][:3] == ["epoch", "tsw-006:train_loss", "tsw-006:test_loss"] and len(curves) == 401


def make_live_sweep(runs_dir: Path, epochs: int) -> None:
    """A 2-member sweep "live" (weight decay 0.1, 1; tiny mod_add p=7), nothing trained."""
    from grok_engine.config import RunConfig
    from grok_engine.sweep.grid import Axis, Member
    from grok_engine.sweep.store import SweepStore

    base = RunConfig().replace(task="mod_add", p=7, n_layers=1, n_heads=2, d_model=32, d_head=16, d_mlp=64,
                               epochs=epochs, checkpoint_every=10, device="cpu")
    axis = Axis("weight-decay", (0.1, 1.0))
    SweepStore(runs_dir).create(base, [axis], [Member({"weight-decay": v}, base.replace(weight_decay=v))
                                               for v in axis.values], sweep_id="live")


async def test_sweep_screen_trains_the_sweep_and_fills_in_live(tmp_path):
    """t starts `grok-tui sweep --resume` in a child; the diagram fills in as members finish."""
    import asyncio

    make_live_sweep(tmp_path / "runs", epochs=30)
    app = GrokApp(None, tmp_path / "runs", sweep_id="live")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert [f.status for f in screen.figures] == ["not started", "not started"]
        assert all(f.phase is None for f in screen.figures)
        await pilot.press("t")
        assert screen.trainer is not None
        for _ in range(600):  # the child imports torch, then trains 2 x 30 epochs
            await asyncio.sleep(0.2)
            if screen.trainer is None and not screen.unfinished():
                break
        await settle(app, pilot)
        assert [f.status for f in screen.figures] == ["done", "done"]
        assert all(f.phase is not None for f in screen.figures)
        assert screen._live is None  # nothing left to follow


async def test_sweep_screen_stops_the_training_and_keeps_the_members(tmp_path):
    import asyncio

    make_live_sweep(tmp_path / "runs", epochs=1_000_000)
    app = GrokApp(None, tmp_path / "runs", sweep_id="live")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("t")
        for _ in range(600):  # until the live re-read sees a member with checkpoints
            await asyncio.sleep(0.2)
            if any(f.status == "partial" for f in screen.figures):
                break
        await pilot.press("s")
        for _ in range(300):
            await asyncio.sleep(0.2)
            if screen.trainer is None:
                break
        assert screen.trainer is None
        await settle(app, pilot)
        assert any(f.status == "partial" and f.epochs_done > 0 for f in screen.figures)
        assert "training" not in str(screen.query_one("#sweep-title").render())
