"""SVG snapshots of the app at 80x24 on a tiny deterministic run (p=7, 200 epochs, a
checkpoint every 50; run id "tiny", runs folder "runs" relative to a fixed cwd so no path
or timestamp reaches the screen). Update with ``pytest --snapshot-update`` after a
deliberate change of the look, and look at the SVGs before committing them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures import copy_tiny_run, settle

from grok_tui.app import GrokApp
from grok_tui.screens.run import pane_classes

SIZE = (80, 24)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("snap_src") / "runs"
    copy_tiny_run(runs, "tiny")
    return runs


@pytest.fixture
def here(trained, tmp_path, monkeypatch) -> Path:
    """cwd with ./runs/tiny in it."""
    shutil.copytree(trained, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def keys_then_settle(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot.app, pilot)

    return run_before


PANES = [(c.KEY, c.STUDY) for c in pane_classes()]


@pytest.mark.parametrize("key, study", PANES, ids=[s for _k, s in PANES])
def test_pane(snap_compare, here, key, study):
    assert snap_compare(GrokApp("tiny", "runs"), terminal_size=SIZE,
                        run_before=keys_then_settle(key))


def test_training_pane_at_an_earlier_checkpoint(snap_compare, here):
    assert snap_compare(GrokApp("tiny", "runs"), terminal_size=SIZE,
                        run_before=keys_then_settle("left", "left"))


def test_run_picker(snap_compare, here):
    assert snap_compare(GrokApp(None, "runs"), terminal_size=SIZE, run_before=keys_then_settle())


def test_new_run_form_with_an_error(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot) -> None:
        await settle(pilot.app, pilot)
        pilot.app.screen.query_one("#field-p").value = "1"
        await pilot.pause()

    assert snap_compare(GrokApp(None, "empty"), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, here):
    assert snap_compare(GrokApp("tiny", "runs"), terminal_size=SIZE,
                        run_before=keys_then_settle("question_mark"))


def test_export_modal(snap_compare, here):
    assert snap_compare(GrokApp("tiny", "runs"), terminal_size=SIZE,
                        run_before=keys_then_settle("e"))


SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"


@pytest.fixture
def here_sweep(tmp_path, monkeypatch) -> Path:
    """cwd with ./runs holding the committed tiny sweep tsw (tests/data/make_tiny_sweep.py)."""
    shutil.copytree(SWEEPS, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sweep_screen(snap_compare, here_sweep):
    # frac-train 0.8 fixed, the cursor on lr 1e-2 / weight decay 4 (tsw-010, grokking)
    assert snap_compare(GrokApp(None, "runs", sweep_id="tsw"), terminal_size=SIZE,
                        run_before=keys_then_settle("f", "right", "down"))


def test_sweep_screen_coloured_by_test_99_epoch(snap_compare, here_sweep):
    assert snap_compare(GrokApp(None, "runs", sweep_id="tsw"), terminal_size=SIZE,
                        run_before=keys_then_settle("f", "c"))


def test_compare_screen(snap_compare, here_sweep):
    assert snap_compare(GrokApp(None, "runs", compare=["tsw-006", "tsw-010", "tsw-011"]), terminal_size=SIZE,
                        run_before=keys_then_settle("b"))
