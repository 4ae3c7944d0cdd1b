"""End to end, the multi-run screens: the installed ``grok-tui`` in a real terminal (tmux,
100x30) on the committed tiny sweep (tests/data/sweeps).

``grok-tui tsw`` opens the sweep screen; the cursor moves in the phase diagram to the
grokking member, Enter opens its run screen (its id in the status line), Escape comes
back. Then ``grok-tui compare tsw-006 tsw-010`` shows both ids and both runs' curves.
The command runs with this checkout first on PYTHONPATH (the same code once installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_tmux import TMUX, grok_tui_command, keys, wait_for

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "tests" / "data" / "sweeps"
BRAILLE = "[\u2801-\u28ff]"


def start(tmp_path: Path, args: str) -> str:
    command = grok_tui_command()
    if command is None:
        pytest.skip("the grok-tui command is not installed (pip install -e .)")
    session = f"grok-e2e-{uuid.uuid4().hex[:8]}"
    prefix = f"cd {tmp_path} && OMP_NUM_THREADS=1 PYTHONPATH={ROOT} "
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    prefix + f"{command} {args} --runs-dir runs"], check=True,
                   env={**os.environ, "TERM": "xterm-256color"})
    return session


def curve_colours(session: str) -> dict[str, int]:
    """Braille dots (plotted points) per foreground colour code in the plots' lines."""
    screen = subprocess.run([TMUX, "capture-pane", "-e", "-p", "-t", session], capture_output=True,
                            text=True, check=True).stdout
    counts: dict[str, int] = {}
    for line in screen.splitlines():
        if "┤" not in line:
            continue
        colour = ""
        for escape, text in re.findall(r"(\x1b\[[0-9;]*m)?([^\x1b]*)", line):
            if escape:
                colour = escape
            dots = len(re.findall(BRAILLE, text))
            if dots:
                counts[colour] = counts.get(colour, 0) + dots
    return counts


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    shutil.copytree(SWEEPS, tmp_path / "runs")
    return tmp_path


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.timeout(240)
def test_sweep_screen_then_compare_in_tmux(sweep_dir):
    session = start(sweep_dir, "tsw")
    try:
        wait_for(session, r"sweep tsw\s+·\s+12/12 done")
        wait_for(session, r"weight-decay=0\.1\s+lr=0\.0001\s+confusion\s+tsw-000")
        keys(session, "f", "Right", "Down")  # frac-train 0.8; lr 1e-2, weight decay 4
        wait_for(session, r"weight-decay=4\s+lr=0\.01\s+grokking\s+tsw-010")
        keys(session, "Enter")
        wait_for(session, r"tsw-010\s+epoch 400 \(\d+/\d+\)")  # the member's status line
        keys(session, "Escape")
        wait_for(session, r"sweep tsw\s+·\s+12/12 done")
        keys(session, "q")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)

    session = start(sweep_dir, "compare tsw-006 tsw-010")
    try:
        wait_for(session, r"comparing tsw-006, tsw-010")
        wait_for(session, r"━━ tsw-006\s+━━ tsw-010")  # the legend: a colour per run
        colours = curve_colours(session)
        assert len([c for c, n in colours.items() if n >= 10]) >= 2, colours  # both runs' curves
        wait_for(session, r"field\s+tsw-006\s+tsw-010")  # the table: a column per run
        wait_for(session, r"phase\s+memorisation\s+grokking")
        keys(session, "q")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)
