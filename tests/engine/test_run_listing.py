"""One bad run or file hides nothing else: ``RunStore.summaries`` and ``grok-tui runs`` list
every run, and mark each one that cannot be read with one line naming the file and what is
wrong with it; run contents and paths are printed as data, never as Rich markup; the table
is never cut at 80 columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from grok_engine.errors import CorruptCheckpoint, GrokError
from grok_engine.store import RunStore
from grok_tui.cli import main

def rewrite(path: Path, edit) -> None:
    """Save the tensors of a safetensors file after ``edit(tensors)`` changed them."""
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def edit_config(run_dir: Path, edit) -> None:
    path = run_dir / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


# name -> (how to break a copy of the good run, the file named, the problem stated)
BREAKERS = {
    "config_markup": (lambda d: edit_config(d, lambda c: c["task"].update(p="[/red][/]")),
                      "config.json", "p='[/red][/]' is not an integer"),
    "config_folder": (lambda d: replace_with_folder(d / "config.json"), "config.json", "is a folder"),
    "config_not_json": (lambda d: (d / "config.json").write_text("{nope"), "config.json", "not valid JSON"),
    "config_a_list": (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json", "holds a list"),
    "config_section": (lambda d: edit_config(d, lambda c: c.update(task=5)), "config.json", "section 'task'"),
    "metrics_no_test_acc": (lambda d: rewrite(d / "metrics.safetensors", lambda t: t.pop("test_acc")),
                            "metrics.safetensors", "lacks test_acc"),
    "metrics_2d": (lambda d: rewrite(d / "metrics.safetensors",
                                     lambda t: t.update(train_acc=t["train_acc"].reshape(2, -1))),
                   "metrics.safetensors", "train_acc has shape (2, 10)"),
    "metrics_length": (lambda d: rewrite(d / "metrics.safetensors",
                                         lambda t: t.update(test_loss=t["test_loss"][:5])),
                       "metrics.safetensors", "differ in length"),
    "metrics_epochs": (lambda d: rewrite(d / "metrics.safetensors",
                                         lambda t: t.update(epoch=t["epoch"].flip(0))),
                       "metrics.safetensors", "epochs are not 1, 2, ..., 20"),
    "metrics_garbage": (lambda d: (d / "metrics.safetensors").write_bytes(b"\0" * 50),
                        "metrics.safetensors", "is corrupt"),
    "split_missing": (lambda d: (d / "split.safetensors").unlink(), "split.safetensors", "does not exist"),
    "split_no_test": (lambda d: rewrite(d / "split.safetensors", lambda t: t.pop("test_indices")),
                      "split.safetensors", "lacks test_indices"),
    "split_overlap": (lambda d: rewrite(d / "split.safetensors",
                                        lambda t: t.update(test_indices=t["train_indices"].clone())),
                      "split.safetensors", "do not cover"),
    "resume_no_moment": (lambda d: rewrite(d / "resume" / "epoch_000020.safetensors",
                                           lambda t: t.pop("exp_avg/embed.W_E")),
                         "epoch_000020.safetensors", "lacks exp_avg/embed.W_E"),
    "resume_shape": (lambda d: rewrite(d / "resume" / "epoch_000020.safetensors",
                                       lambda t: t.update({"exp_avg_sq/unembed.W_U": torch.zeros(1)})),
                     "epoch_000020.safetensors", "exp_avg_sq/unembed.W_U has shape (1,)"),
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, tiny_factory):
    return tiny_factory.trained_run(tmp_path_factory.mktemp("good") / "runs", "good", epochs=20, checkpoint_every=10)


@pytest.fixture
def broken_store(good_run, tmp_path) -> RunStore:
    """A runs folder whose path has markup in it: the good run and one broken copy of it per
    BREAKERS entry (named after the entry)."""
    root = tmp_path / "br[/]" / "[bold]runs"
    shutil.copytree(good_run.path, root / "good")
    for name, (breaker, _file, _problem) in BREAKERS.items():
        shutil.copytree(good_run.path, root / name)
        breaker(root / name)
    return RunStore(root)


def test_every_run_is_listed_and_each_bad_one_names_its_file_and_problem(broken_store):
    summaries = {s.id: s for s in broken_store.summaries()}
    assert sorted(summaries) == sorted(["good", *BREAKERS])
    good = summaries["good"]
    assert good.error is None and (good.epochs_done, good.epochs_planned) == (20, 20)
    for name, (_breaker, file, problem) in BREAKERS.items():
        error = summaries[name].error
        assert error is not None and len(error.splitlines()) == 1, name
        assert file in error and problem in error, (name, error)


def test_reading_a_bad_file_raises_one_grok_error_naming_it(broken_store):
    with pytest.raises(GrokError, match="metrics.safetensors is corrupt: it lacks test_acc"):
        broken_store.open("metrics_no_test_acc").metrics()
    with pytest.raises(GrokError, match="lacks test_indices"):
        broken_store.open("split_no_test").dataset()
    with pytest.raises(GrokError, match="lacks exp_avg/embed.W_E"):
        broken_store.open("resume_no_moment").trainer()
    with pytest.raises(CorruptCheckpoint, match="does not exist"):
        broken_store.open("split_missing").dataset()
    # a half-made import (from before imports were assembled aside) never trains from scratch
    half = broken_store.root / "good"
    shutil.rmtree(half / "checkpoints")
    shutil.rmtree(half / "resume")
    edit_config(half, lambda c: c.update(source="import:grokking.pth"))
    with pytest.raises(GrokError, match="unfinished import"):
        broken_store.open("good").trainer()
    # a bad metrics file hides no checkpoint
    on_disk = sorted(int(f.stem.split("_")[1])
                     for f in (broken_store.root / "metrics_2d" / "checkpoints").glob("epoch_*.safetensors"))
    assert broken_store.open("metrics_2d").checkpoint_epochs() == on_disk and len(on_disk) >= 3


def test_permission_denied_is_not_reported_as_missing(broken_store, monkeypatch):
    """Root reads every file, so the refusal is simulated where the file is opened."""
    target = broken_store.root / "good" / "config.json"
    original = Path.read_bytes

    def read_bytes(self):
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    error = {s.id: s for s in broken_store.summaries()}["good"].error
    assert error == f"{target} cannot be read: permission denied"


def test_runs_command_lists_all_as_plain_text_and_fits_80_columns(broken_store, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "--runs-dir", str(broken_store.root)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert f"runsin{broken_store.root}" in "".join(out.split())  # the title, wrapped or not
    table, _, problems = out.partition("unreadable run ")
    assert "20/20" in table and "…" not in out
    assert all(len(line) <= 80 for line in table.splitlines()), table
    for name, (_breaker, file, problem) in BREAKERS.items():
        assert name in table
        line = next(ln for ln in out.splitlines() if ln.startswith(f"unreadable run {name}: "))
        assert file in line and problem in line, line  # one line: the markup shown as text


def id_column(out: str) -> str:
    """The id column's text, its folded lines joined (the whole output when it is no table)."""
    lines = out.splitlines()
    header = next((ln for ln in lines if " task " in ln and " epochs" in ln), None)
    if header is None:  # a run per paragraph: the id comes first
        return "".join(out.split())
    cut = header.index(" task ")
    body = lines[lines.index(header) + 1:]
    return "".join(ln[:cut] for ln in body).translate(str.maketrans("", "", "│┃┡━╇ "))


@pytest.mark.parametrize("columns", [80, 60, 30])
def test_runs_table_never_cuts_its_last_column(good_run, tmp_path, capsys, monkeypatch, columns):
    """Long ids and epoch counts: the table folds, goes compact, or becomes a line per run,
    but every cell is shown whole."""
    root = tmp_path / "runs"
    long_id = "mod_add-p113-20250101-120000-with-a-long-suffix"
    shutil.copytree(good_run.path, root / long_id)
    edit_config(root / long_id, lambda c: c["train"].update(epochs=1_000_000))
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["runs", "--runs-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and all(len(line) <= columns for line in out.splitlines()), out
    flat = "".join(out.split())
    for cell in ("20/1000000", "mod_add"):
        assert cell in flat, (cell, out)
    assert long_id in id_column(out), out
    row = next((ln for ln in out.splitlines() if "20/1000000" in ln and "mod_add" in ln), None)
    if row is not None:  # a table: its row ends with the last cell ("-": not grokked), whole
        assert row.rstrip(" │").endswith(" -") and ("99% at" in out), out
    else:
        assert "99%at-" in flat, out
