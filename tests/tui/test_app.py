"""Pilot tests of the app shell: opening runs, checkpoint keys, panes, export, help, the
new-run form and live training, on a tiny deterministic run (p=7, 200 epochs, a checkpoint
every 50 and dense ones where its test metrics move: here 0, 50, 100, 110, 120, 150, 200)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from tests.fixtures import make_tiny_run, settle

from grok_tui.app import GrokApp, run_app

pytestmark = pytest.mark.anyio



def checkpoints(runs: Path, run_id: str = "tiny") -> list[int]:
    """The run's checkpoint epochs: 0, 50, 100, 150, 200 and any dense ones (epochs where its
    test accuracy moved by two rows or more)."""
    from grok_engine.store import RunStore

    return RunStore(runs).open(run_id).checkpoint_epochs()


def record_notifications(app: GrokApp) -> list[tuple[str, str]]:
    """(severity, message) of every notify() call from now on."""
    seen: list[tuple[str, str]] = []
    original = app.notify

    def notify(message, *, title="", severity="information", **kwargs):
        seen.append((severity, str(message)))
        return original(message, title=title, severity=severity, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return seen


def status_epoch(app: GrokApp) -> int | None:
    return app.screen.query_one("#status").epoch


def test_unknown_run_is_refused_before_the_app_starts(runs, capsys):
    assert run_app("nope", str(runs)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "run 'nope' does not exist" in err[0] and "tiny" in err[0]


async def test_checkpoint_keys_move_the_status_line(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunScreen"
        epochs = checkpoints(runs)
        assert app.screen.epochs == epochs and {0, 50, 100, 150, 200} <= set(epochs)
        assert status_epoch(app) == 200  # opens on the last checkpoint
        n = len(epochs)
        for key, expected in [("left", epochs[-2]), ("h", epochs[-3]), ("right", epochs[-2]),
                              ("l", 200), ("right", 200), ("left_square_bracket", epochs[max(0, n - 11)]),
                              ("right_square_bracket", 200), ("home", 0), ("end", 200)]:
            await pilot.press(key)
            assert status_epoch(app) == expected, key
        status = str(app.screen.query_one("#status").render())
        assert "tiny" in status and f"epoch 200 ({n}/{n})" in status
        await settle(app, pilot)
        training = app.screen.panes["curves"]
        assert training.marker == 200
        assert training.result is not None and training.result.epoch == 200  # phases study


async def test_goto_epoch_modal_takes_the_nearest_checkpoint(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("g")
        assert type(app.screen).__name__ == "GotoEpochScreen"
        await pilot.press("ctrl+a", "ctrl+k", *"abc", "enter")  # not a number: stays, says why
        error = app.screen.query_one("#prompt-error")
        assert "epoch='abc' is not an integer" in str(error.render())
        await pilot.press("ctrl+a", "ctrl+k", "1", "0", "0")
        assert str(error.render()) == ""  # the text is fixed: no stale message
        await pilot.press("enter")
        assert status_epoch(app) == 100
        await pilot.press("g", "ctrl+a", "ctrl+k", "7", "3", "enter")
        assert status_epoch(app) == 50


async def test_every_pane_follows_the_checkpoint(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert len(screen.panes) >= 1 and next(iter(screen.panes)) == "curves"
        for study, pane in screen.panes.items():
            await pilot.press(pane.KEY)
            await settle(app, pilot)
            assert screen.current_pane is pane
            assert pane.result is not None and pane.result.study == study
            assert pane.result.epoch == 200
        assert app.focused is screen.current_pane  # arrows reach the checkpoint keys
        await pilot.press("left")  # the visible (last) pane recomputes for epoch 150
        await settle(app, pilot)
        assert screen.shown[screen.current_pane.STUDY][0] == 150
        assert screen.shown["embedding"][0] == 200  # hidden panes wait until shown
        await pilot.press("1")  # a pane shown again catches up with the checkpoint
        await settle(app, pilot)
        assert screen.panes["curves"].result.epoch == 150


async def test_options_changed_recomputes_only_that_pane(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        pane = screen.panes["curves"]
        before = pane.result
        pane.post_message(pane.OptionsChanged(pane, {"acc_threshold": 0.5}))
        await settle(app, pilot)
        assert pane.options == {"acc_threshold": 0.5}
        assert pane.result is not before
        assert pane.result.scalars["epoch"] == 200


async def test_export_writes_the_focused_pane_to_csv(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await settle(app, pilot)
        await pilot.press("e")
        assert type(app.screen).__name__ == "ExportScreen"
        proposed = app.screen.query_one("#prompt-input").value
        assert proposed == "exports/tiny/curves_curves_table_epoch200.csv"
        await pilot.press("enter")
        await settle(app, pilot)
        path = tmp_path / proposed
        with open(path) as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["epoch", "train_loss", "test_loss", "train_acc", "test_acc"]
        assert len(rows) == 201 and rows[-1][0] == "200"
        assert any(sev == "information" and proposed in msg for sev, msg in seen)


async def test_export_all_writes_every_study(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await settle(app, pilot)
        await pilot.press("left", "E")
        assert app.screen.query_one("#prompt-input").value == "exports/tiny/epoch150"
        await pilot.press("enter")
        await settle(app, pilot)
        folder = tmp_path / "exports/tiny/epoch150"
        from grok_engine.studies import STUDY_MODULES

        names = {p.name for p in folder.iterdir()}
        for study in STUDY_MODULES:
            assert any(n.startswith(f"{study}_") for n in names), study
        assert not [s for s in seen if s[0] == "error"], seen
        # the toast counts the files on disk (tables and grids of one name no longer collide)
        assert any(f"wrote {len(names)} files in" in msg for _, msg in seen), seen


async def test_export_to_an_unwritable_path_notifies_an_error(runs, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await settle(app, pilot)
        await pilot.press("e")
        bad = str(blocker / "sub" / "x.csv")
        app.screen.query_one("#prompt-input").value = bad
        await pilot.press("enter")
        await settle(app, pilot)
        errors = [msg for sev, msg in seen if sev == "error"]
        assert errors and "cannot" in errors[0] and str(blocker) in errors[0]
        assert type(app.screen).__name__ == "RunScreen"  # nothing crashed


async def test_help_lists_the_keys_of_pane_screen_and_app(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        rows = app.screen.rows
        described = {desc for _where, _keys, desc in rows}
        for wanted in ("Next ckpt", "Prev ckpt", "Go to epoch", "Export", "Export all", "Stop",
                       "Resume", "Continue", "Help", "Quit"):
            assert wanted in described, wanted
        assert any(where == "App" for where, _k, _d in rows)
        assert any(where.startswith("Embedding") or where == "Run" for where, _k, _d in rows)
        await pilot.press("escape")
        assert type(app.screen).__name__ == "RunScreen"
        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("f1")
        assert type(app.screen).__name__ == "RunScreen"


async def test_command_palette_runs_the_same_actions(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"First checkpoint")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert status_epoch(app) == 0


async def test_run_picker_lists_runs_and_opens_one(runs):
    app = GrokApp(None, runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunPickerScreen"
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        row = [str(c) for c in table.get_row_at(0)]
        assert row[1:5] == ["tiny", "add", "7", "200/200"]  # row[0]: the comparison mark
        assert row[5:10] == ["0.001", "1", "0.72", "off", "-"]  # lr, wd, frac, grokfast, sweep
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunScreen" and status_epoch(app) == 200


async def test_new_run_form_marks_bad_fields_inline(tmp_path):
    app = GrokApp(None, tmp_path / "empty")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "NewRunScreen"  # no runs: the default experiment
        p_input = screen.query_one("#field-p")
        p_input.value = "1"
        await pilot.pause()
        message = str(screen.query_one("#error-p").render())
        assert "p=1 is out of range" in message
        assert p_input.has_class("-invalid")
        screen.query_one("#field-lr").value = "abc"
        await pilot.pause()
        assert "lr='abc' is not a number" in str(screen.query_one("#error-lr").render())
        screen.query_one("#start").focus()
        await pilot.press("enter")  # refused: the form stays
        assert type(app.screen).__name__ == "NewRunScreen"
        p_input.value = "13"
        screen.query_one("#field-lr").value = "0.001"
        screen.query_one("#field-task").value = "mod_div"
        await pilot.pause()
        assert str(screen.query_one("#error-p").render()) == ""  # 13 is prime
        p_input.value = "12"
        await pilot.pause()
        assert "not prime" in str(screen.query_one("#error-p").render())
        assert not list((tmp_path / "empty").glob("*"))  # nothing was created


async def test_enter_starts_the_default_experiment(tmp_path):
    runs = tmp_path / "fresh"
    app = GrokApp(None, runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen).__name__ == "NewRunScreen"
        await pilot.press("enter")  # one key
        for _ in range(200):
            await pilot.pause(0.05)
            if type(app.screen).__name__ == "RunScreen" and app.screen.training:
                break
        screen = app.screen
        assert screen.training
        await pilot.press("s")  # stop: the trainer writes a checkpoint and returns
        await settle(app, pilot)
        assert not screen.training
        (run_dir,) = [d for d in runs.iterdir() if d.is_dir()]
        import json

        config = json.loads((run_dir / "config.json").read_text())
        assert config["task"] == {"task": "add", "p": 10, "frac_train": 0.72, "data_seed": 598}
        assert screen.epochs[0] == 0 and len(screen.epochs) >= 2  # init + where it stopped
        assert status_epoch(app) == screen.epochs[-1]


async def test_live_training_appends_checkpoints_and_the_pane_follows(tmp_path):
    runs = tmp_path / "live"
    make_tiny_run(runs, "live", train=False)
    app = GrokApp("live", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.epochs == [] and status_epoch(app) is None
        seen_epochs: list[int] = []
        original = screen.select

        def spy(index: int) -> None:
            original(index)
            seen_epochs.append(screen.epoch)

        screen.select = spy
        await pilot.press("2")  # a study pane in view while it trains
        await pilot.press("r")  # resume: trains epochs 1..200 (a second or two)
        await settle(app, pilot)
        assert screen.current_pane.STUDY == "embedding"
        assert not screen.training
        assert screen.epochs == checkpoints(runs, "live")
        assert {0, 50, 100, 150, 200} <= set(screen.epochs)
        assert status_epoch(app) == 200  # followed every new checkpoint
        assert seen_epochs[-1] == 200 and len(set(seen_epochs)) >= 2
        assert screen.current_pane.result.epoch == 200
        training = screen.panes["curves"]
        assert len(training.epoch) == 200 and training.epoch[-1] == 200


async def test_continue_asks_how_many_epochs_and_trains_them(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("r")  # complete: refused, nothing starts
        assert not app.screen.training
        await pilot.press("c")
        assert type(app.screen).__name__ == "EpochsPrompt"
        await pilot.press("ctrl+a", "ctrl+k", "5", "0", "enter")
        await settle(app, pilot)
        screen = app.screen
        assert screen.epochs[-1] == 250 and status_epoch(app) == 250
        assert screen.run.config.train.epochs == 250
        import json

        assert json.loads((runs / "tiny" / "config.json").read_text())["train"]["epochs"] == 250


async def test_a_number_typed_into_a_prompt_replaces_its_proposal(runs):
    """The proposed epoch count (1000) or epoch is selected: typing replaces it, where it
    was appended to ("10003000"); the export path stays editable in place."""
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        assert type(app.screen).__name__ == "EpochsPrompt"
        assert app.screen.query_one("#prompt-input").value == "1000"
        await pilot.press(*"30")
        assert app.screen.query_one("#prompt-input").value == "30"
        await pilot.press("escape")
        await pilot.press("g", *"50")
        assert app.screen.query_one("#prompt-input").value == "50"
        await pilot.press("escape")
        await pilot.press("e")
        proposed = app.screen.query_one("#prompt-input").value
        await pilot.press("x")
        assert app.screen.query_one("#prompt-input").value == proposed + "x"


def test_first_paint_imports_no_torch():
    """The app module and its first screen leave torch and the engine's heavy modules alone."""
    import subprocess

    code = ("import sys, grok_tui.app, grok_tui.screens.run, grok_tui.commands; "
            "heavy = [m for m in ('torch', 'transformer_lens', 'grok_engine.store', "
            "'grok_engine.train', 'grok_engine.model', 'grok_engine.context') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_enter_in_the_neuron_ranking_keeps_the_table_focused_and_its_keys(runs):
    """The recompute after Enter (the pane loads, then shows) leaves focus where it was."""
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("4")
        await settle(app, pilot)
        pane = app.screen.current_pane
        ranking = pane.query_one("#ranking")
        ranking.focus()
        await pilot.press("down", "enter")
        await settle(app, pilot)
        second = ranking.raw_row(1)["neuron"]
        assert pane.result.scalars["neuron"] == second
        assert app.focused is ranking
        await pilot.press("S")
        assert ranking.sort_column == ranking.column_names[0]


async def test_new_run_form_checks_fields_against_the_form_not_the_defaults(tmp_path):
    """mod_div with p=113 and a small split: each field alone against the defaults (p=10)
    would fail, with the form's other values they are valid."""
    from grok_engine.config import TaskConfig

    app = GrokApp(None, tmp_path / "empty")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        screen.query_one("#field-task").value = "mod_div"
        screen.query_one("#field-p").value = "113"
        screen.query_one("#field-frac_train").value = "0.005"
        await pilot.pause()
        for name in ("task", "p", "frac_train"):
            assert str(screen.query_one(f"#error-{name}").render()) == "", name
        config = screen.validate()
        assert config is not None and config.task == TaskConfig("mod_div", 113, 0.005)
        screen.query_one("#field-p").value = "1"  # p's own error, not one about mod_div
        await pilot.pause()
        assert "p=1 is out of range" in str(screen.query_one("#error-p").render())
        assert str(screen.query_one("#error-task").render()) == ""
        screen.query_one("#field-p").value = "7"  # 7 * 6 * 0.005 rows: an empty train split
        await pilot.pause()
        assert "leaves the train split empty for p=7" in str(screen.query_one("#error-frac_train").render())
        assert screen.validate() is None


async def test_a_picked_neuron_and_head_stay_selected_across_checkpoints(runs):
    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("4")
        await settle(app, pilot)
        neurons = screen.current_pane
        ranking = neurons.query_one("#ranking")
        ranking.focus()
        await pilot.press("down", "down", "down", "enter")
        await settle(app, pilot)
        picked = ranking.raw_row(3)["neuron"]
        assert neurons.result.scalars["neuron"] == picked
        await pilot.press("left")  # the pane asks for the same neuron at epoch 150
        await settle(app, pilot)
        assert neurons.result.epoch == 150 and neurons.result.scalars["neuron"] == picked
        assert screen.panes["fourier"].options["neuron"] == picked  # shared with Fourier
        await pilot.press("6")
        await settle(app, pilot)
        assert screen.shown["fourier"] == (150, (("neuron", repr(picked)),))

        await pilot.press("3")
        await settle(app, pilot)
        attention = screen.current_pane
        await pilot.press("x")  # head 1
        await pilot.press("right")
        await settle(app, pilot)
        assert attention.result.epoch == 200 and attention.head == 1
        assert attention.query_one("#head_map").grid is attention.result.grids["head1_to_a"]


async def test_the_training_pane_takes_its_phases_from_progress_once_they_exist(runs):
    """The tiny run has no progress cache: Training starts from the accuracy fallback; once
    the Progress pane has computed the measures, Training shows the same phases as it."""
    from grok_engine.studies.curves import PHASES, SOURCE_ACCURACY, SOURCE_PROGRESS

    app = GrokApp("tiny", runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.panes["curves"].result.scalars["phases_source"] == SOURCE_ACCURACY
        await pilot.press("7")
        await settle(app, pilot)
        await pilot.press("1")
        await settle(app, pilot)
        curves, progress = screen.panes["curves"].result, screen.panes["progress"].result
        assert curves.scalars["phases_source"] == SOURCE_PROGRESS
        for name in PHASES:  # the progress study's scalars give its phase ends
            ends = dict(zip(curves.tables["phases"].columns["phase"],
                            curves.tables["phases"].columns["end_epoch"]))
            assert ends[name] == progress.scalars[f"{name}_end"], name
