"""``grok-tui compare`` refusals (before the app starts) and ``grok-tui sweep show``
(show_sweep) on the committed tiny sweep (tests/data/sweeps)."""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import pytest

from grok_engine.errors import GrokError
from grok_tui.app import sweep_exists
from grok_tui.cli import main
from grok_tui.cli.sweep_show import show_sweep

SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("show") / "runs"
    shutil.copytree(SWEEPS, runs)
    return runs


@pytest.mark.parametrize("argv, message", [
    (["tsw-000"], "compare takes 2 to 8 runs, got 1"),
    ([f"tsw-00{i}" for i in range(9)], "compare takes 2 to 8 runs, got 9"),
    (["tsw-000", "tsw-000"], "run 'tsw-000' is given twice"),
    (["tsw-000", "nope"], "run 'nope' does not exist in"),
    (["tsw-000", "tsw"], "run 'tsw' does not exist in"),  # a sweep is not a run
])
def test_compare_refuses_bad_runs_with_one_line(sweep_runs, capsys, argv, message):
    assert main(["compare", *argv, "--runs-dir", str(sweep_runs)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("grok-tui: ")


def test_sweep_id_opens_the_sweep_screen(sweep_runs):
    assert sweep_exists(sweep_runs, "tsw") and not sweep_exists(sweep_runs, "tsw-000")
    assert not sweep_exists(sweep_runs, "../runs")


def test_sweep_show_prints_a_row_per_member_and_writes_csv(sweep_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out_csv = tmp_path / "out" / "tsw.csv"
    assert show_sweep(argparse.Namespace(id="tsw", csv=str(out_csv), runs_dir=str(sweep_runs))) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.strip().startswith("tsw-0")]
    assert len(lines) == 12
    grokking = next(line for line in lines if line.strip().startswith("tsw-010"))
    assert "grokking" in grokking and "168" in grokking and "116" in grokking
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["run"] for r in rows] == [f"tsw-{i:03d}" for i in range(12)]
    assert rows[10]["lr"] == "0.01" and rows[10]["weight-decay"] == "4.0" and rows[10]["frac-train"] == "0.8"
    assert rows[10]["phase"] == "grokking" and rows[10]["delay"] == "116"
    assert rows[0]["phase"] == "confusion" and rows[6]["phase"] == "memorisation"
    assert float(rows[10]["restricted_loss"]) > 0 and rows[10]["key_frequencies"]


def test_sweep_show_narrow_terminal_never_cuts(sweep_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert show_sweep(argparse.Namespace(id="tsw", csv=None, runs_dir=str(sweep_runs))) == 0
    text = capsys.readouterr().out
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "run tsw-010" in text and "phase grokking" in text.replace("\n", " ")


def test_sweep_show_unknown_sweep(sweep_runs):
    with pytest.raises(GrokError, match="sweep 'nope' does not exist in .*have tsw"):
        show_sweep(argparse.Namespace(id="nope", csv=None, runs_dir=str(sweep_runs)))
