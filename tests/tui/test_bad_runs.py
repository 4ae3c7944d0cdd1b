"""Pilot tests of the app with bad runs: run contents and paths are shown as text, never
parsed as markup (a runs folder named ``br[/]``, a config value ``[/red][/]``); the picker
lists every run and names each bad one's file and problem; a corrupt metrics file still
opens the run's checkpoints, with a notice; a corrupt checkpoint is skipped by the
Progress pane, which names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from test_app import checkpoints, record_notifications
from tests.fixtures import settle

from grok_tui.app import GrokApp

pytestmark = pytest.mark.anyio


@pytest.fixture
def markup_runs(trained_dir, tmp_path) -> Path:
    """``br[/]/[bold]runs``: the good run ``tiny``, ``bad_config`` (p is "[/red][/]"),
    ``bad_metrics`` (its metrics file is garbage) and ``zeroed`` (checkpoint 50 is zeros)."""
    root = tmp_path / "br[/]" / "[bold]runs"
    for name in ("tiny", "bad_config", "bad_metrics", "zeroed"):
        shutil.copytree(trained_dir / "tiny", root / name)
    config = root / "bad_config" / "config.json"
    data = json.loads(config.read_text())
    data["task"]["p"] = "[/red][/]"
    config.write_text(json.dumps(data))
    (root / "bad_metrics" / "metrics.safetensors").write_bytes(b"\0" * 40)
    ckpt = root / "zeroed" / "checkpoints" / "epoch_000050.safetensors"
    ckpt.write_bytes(b"\0" * ckpt.stat().st_size)
    return root


def plain(widget) -> str:
    return str(widget.render())


async def test_picker_lists_every_run_as_text_and_names_the_bad_ones(markup_runs):
    app = GrokApp(None, markup_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await settle(app, pilot)
        picker = app.screen
        assert type(picker).__name__ == "RunPickerScreen"
        assert f"Runs in {markup_runs}" in picker.query_one("#picker")._border_title.plain
        table = picker.query_one("#runs-table")
        ids = [table.get_row_at(i)[1].plain for i in range(table.row_count)]  # [0]: the mark
        assert ids == ["bad_config", "bad_metrics", "tiny", "zeroed"]
        assert table.get_row_at(0)[4].plain == "unreadable"
        problems = plain(picker.query_one("#picker-problems")).splitlines()
        assert len(problems) == 2
        assert problems[0].startswith("unreadable run bad_config: ") and "p='[/red][/]'" in problems[0]
        assert "bad_metrics" in problems[1] and "metrics.safetensors is corrupt" in problems[1]
        assert "4 runs (2 unreadable)" in plain(picker.query_one("#picker-note"))

        await pilot.press("enter")  # bad_config: refused with its reason, the picker comes back
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunPickerScreen"
        assert any(sev == "error" and "p='[/red][/]'" in msg for sev, msg in seen), seen

        await pilot.press("down", "down", "enter")  # tiny
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunScreen" and app.screen.run.id == "tiny"
        assert plain(app.screen.query_one("#status")).startswith(f"tiny  epoch 200 ({len(checkpoints(markup_runs))}/{len(checkpoints(markup_runs))})")


async def test_a_run_that_cannot_open_says_why_in_plain_text(markup_runs):
    """The start page's line and the toast hold the bracketed path and value as text."""
    app = GrokApp("bad_config", markup_runs)
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        boot = plain(app.query_one("#boot-text"))
        assert boot.startswith("grok-tui: ") and "p='[/red][/]'" in boot
        assert str(markup_runs) in "".join(boot.split())
        assert any(sev == "error" and "p='[/red][/]'" in msg for sev, msg in seen), seen


async def test_a_corrupt_metrics_file_still_opens_the_checkpoints(markup_runs):
    app = GrokApp("bad_metrics", markup_runs)
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "RunScreen"
        assert screen.epochs == checkpoints(markup_runs, "bad_metrics")  # not "no checkpoints yet"
        assert any(sev == "warning" and "metrics.safetensors is corrupt" in msg for sev, msg in seen), seen
        await pilot.press("2")  # a study of the checkpoint works
        await settle(app, pilot)
        assert screen.panes["embedding"].result is not None


async def test_progress_pane_skips_a_corrupt_checkpoint_and_says_which(markup_runs):
    app = GrokApp("zeroed", markup_runs)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("7")
        await settle(app, pilot)
        pane = app.screen.panes["progress"]
        assert pane.result is not None and pane.result.scalars["skipped_checkpoints"] == [50]
        summary = plain(pane.query_one("#summary"))
        assert "skipped 1 unreadable checkpoint" in summary and "epoch_000050.safetensors" in summary


async def test_a_diverged_run_says_so_in_the_picker_and_when_opened(runs):
    """A run marked diverged (diverged.json, as the trainer writes it) shows the epoch in the
    picker's epochs column and a notice when it opens."""
    import json as _json

    (runs / "tiny" / "diverged.json").write_text(_json.dumps({"epoch": 201, "reason": "train loss is nan"}))
    app = GrokApp(None, runs)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("#runs-table")
        cells = [str(c) for c in table.get_row_at(0)]
        assert any("diverged at 201" in c for c in cells), cells
    app = GrokApp("tiny", runs)
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert any("diverged at epoch 201 (train loss is nan)" in msg for _sev, msg in seen), seen


async def test_a_run_too_large_for_memory_is_refused_by_the_app_before_its_folder(tmp_path):
    """The new-run form's request goes through the same size check as `grok-tui train`."""
    from grok_engine.config import RunConfig
    from grok_tui.screens.new_run import NewRunRequest

    runs_dir = tmp_path / "runs"
    app = GrokApp(None, runs_dir)
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.create_run(NewRunRequest(RunConfig().replace(task="mod_add", p=1000, device="cpu"), "huge"))
        await settle(app, pilot)
    assert any(sev == "error" and "memory" in msg for sev, msg in seen), seen
    assert not (runs_dir / "huge").exists()
