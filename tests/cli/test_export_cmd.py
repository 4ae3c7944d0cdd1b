"""``grok-tui export``: headline scalars on the terminal, one study at a checkpoint, and one
line for each unknown run, checkpoint or study."""

from __future__ import annotations

import os
import re

import pytest

from grok_tui.cli import main
from tests.fixtures import EXPORT_RUN, train_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("export_runs"), "tiny", **EXPORT_RUN)


def test_cli_export_all_prints_headline_scalars(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "tiny", "--all", "--out", str(out), "--runs-dir", str(tiny_run.path.parent)])
    assert code == 0
    text = capsys.readouterr().out
    assert "embedding:" in text and "probe:" in text and "wrote" in text
    assert (out / "embedding_scalars_epoch6.csv").exists()
    # the count printed is the count on disk, and each study's line adds up to it
    on_disk = len(os.listdir(out))
    assert f"wrote {on_disk} files for run tiny epoch 6" in text
    assert sum(int(n) for n in re.findall(r"^\w+: (\d+) files", text, flags=re.M)) == on_disk


def test_cli_export_one_study_at_a_checkpoint(tiny_run, tmp_path, capsys):
    code = main(["export", "tiny", "--checkpoint", "3", "--study", "attention", "--out",
                 str(tmp_path), "--runs-dir", str(tiny_run.path.parent)])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names and all(n.startswith("attention_") for n in names)


@pytest.mark.parametrize("argv, expected", [
    (["export", "nope"], "run 'nope' does not exist"),
    (["export", "tiny", "--checkpoint", "4"], "checkpoint epoch=4 does not exist in run tiny: have 0, 3, 6"),
    (["export", "tiny", "--study", "bogus"], "study 'bogus' does not exist: choose one of curves"),
    (["export", "tiny", "--checkpoint", "x"], "is not an integer"),
    (["export"], "grok-tui export:"),
])
def test_cli_export_refuses_unknown_things_in_one_line(tiny_run, capsys, argv, expected):
    code = main([*argv, "--runs-dir", str(tiny_run.path.parent)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
