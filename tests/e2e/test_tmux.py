"""End to end: the installed ``grok-tui`` command in a real terminal (tmux, 100x30).

Opens a tiny run, steps to the previous checkpoint, switches pane and back, exports the
Training pane with ``e`` + Enter, and reads the screen and the CSV it wrote.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures import copy_tiny_run

TMUX = shutil.which("tmux")


def grok_tui_command() -> str | None:
    return shutil.which("grok-tui") or next(
        (str(p) for p in [Path(sys.prefix) / "bin" / "grok-tui"] if p.exists()), None)


def capture(session: str) -> str:
    return subprocess.run([TMUX, "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


def wait_for(session: str, pattern: str, timeout: float = 60.0) -> re.Match:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(session)
        match = re.search(pattern, screen)
        if match:
            return match
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared; the screen was:\n{screen}")


def keys(session: str, *names: str) -> None:
    subprocess.run([TMUX, "send-keys", "-t", session, *names], check=True)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.timeout(180)
def test_grok_tui_in_tmux(tmp_path):
    command = grok_tui_command()
    if command is None:
        pytest.skip("the grok-tui command is not installed (pip install -e .)")
    copy_tiny_run(tmp_path / "runs", "tiny")
    session = f"grok-e2e-{uuid.uuid4().hex[:8]}"
    env_prefix = f"cd {tmp_path} && OMP_NUM_THREADS=1 "
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    env_prefix + f"{command} tiny --runs-dir runs"], check=True,
                   env={**os.environ, "TERM": "xterm-256color"})
    try:
        wait_for(session, r"tiny\s+epoch 200 \((\d+)/\1\)")  # the last of its checkpoints
        keys(session, "Left")
        wait_for(session, r"epoch 150 \(\d+/\d+\)")
        keys(session, "2")
        wait_for(session, r"2 Embedding")
        keys(session, "1")
        wait_for(session, r"checkpoint 150")  # the pane's result at 150 (else: nothing to export yet)
        keys(session, "e")
        wait_for(session, r"exports/tiny/curves_curves_table_epoch150\.csv")
        keys(session, "Enter")
        csv_path = tmp_path / "exports" / "tiny" / "curves_curves_table_epoch150.csv"
        deadline = time.monotonic() + 30
        while not csv_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert csv_path.exists(), capture(session)
        with open(csv_path) as fh:
            header = next(csv.reader(fh))
        assert header == ["epoch", "train_loss", "test_loss", "train_acc", "test_acc"]
        # the toast, where a long path wraps onto its next line (after the toast's border)
        wait_for(session, r"wrote(?: |[^\n]*\n[^\n]*▌ )exports/tiny/curves_curves_table_epoch150\.csv")
        keys(session, "q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            alive = subprocess.run([TMUX, "has-session", "-t", session], capture_output=True)
            if alive.returncode != 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("grok-tui did not quit on q")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)


P113_RUN = Path(__file__).parent.parent / "data" / "runs" / "p113"  # tests/data/make_p113_run.py


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.timeout(180)
def test_p113_clusters_show_three_digit_counts(tmp_path):
    """The grokked p=113 model's neuron clusters hold 100+ neurons each: at 80x24 the
    Fourier pane's Clusters view shows each key frequency with its whole 3-digit count
    (a column cut to two digits showed "116" as "11")."""
    command = grok_tui_command()
    if command is None:
        pytest.skip("the grok-tui command is not installed (pip install -e .)")
    shutil.copytree(P113_RUN, tmp_path / "runs" / "p113")
    session = f"grok-e2e-{uuid.uuid4().hex[:8]}"
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    f"cd {tmp_path} && OMP_NUM_THREADS=1 {command} p113 --runs-dir runs"],
                   check=True, env={**os.environ, "TERM": "xterm-256color"})
    try:
        wait_for(session, r"p113\s+epoch 600")
        keys(session, "6")
        wait_for(session, r"key frequencies 7, 9, 24, 36")
        keys(session, "v", "v")
        counts = {}
        deadline = time.monotonic() + 60
        while len(counts) < 4 and time.monotonic() < deadline:
            screen = capture(session)
            # the "Neurons per cluster" table's rows (frequency, neuron count) start their
            # lines; the neuron table beside it only follows from its 6th line on
            counts = {}
            for freq, n in re.findall(r"(?m)^\W*(7|9|24|36)\s+(\d+)\s", screen):
                counts.setdefault(int(freq), int(n))
            time.sleep(0.2)
        assert sorted(counts) == [7, 9, 24, 36], capture(session)
        assert all(100 <= n <= 512 for n in counts.values()), (counts, capture(session))
        keys(session, "q")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)
