"""Shared pieces of the bench: timed subprocesses, the anchor's location, summary rows."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SHARED = Path(os.environ.get("GROK_SHARED_DIR", REPO.parent / "shared"))
ANCHOR_DIR = SHARED / "anchor"
GROK_TUI = [str(Path(sys.executable).with_name("grok-tui"))]
if not Path(GROK_TUI[0]).exists():
    GROK_TUI = [sys.executable, "-m", "grok_tui.cli"]


# -- results ---------------------------------------------------------------------------

@dataclass
class Figure:
    """One line of the summary table."""

    name: str
    ours: str
    anchor: str = "-"
    ratio: float | None = None  # anchor / ours: how many times faster (or smaller) we are
    target: float | None = None  # the ratio we aim for
    note: str = ""
    absolute: bool | None = None  # a target on our figure alone (e.g. peak RSS < 2 GiB): met or not

    @property
    def verdict(self) -> str:
        if self.absolute is not None:
            return "PASS" if self.absolute else "FAIL"
        if self.target is None or self.ratio is None:
            return "-"
        return "PASS" if self.ratio >= self.target else "FAIL"


@dataclass
class Bench:
    quick: bool
    reps: int
    workdir: Path
    anchor_python: str | None
    anchor_why_not: str = ""
    figures: list[Figure] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # anchor save files made on the way

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)


def say(text: str = "") -> None:
    print(text, flush=True)


# -- running things --------------------------------------------------------------------

def run_timed(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600,
              cwd: Path | None = None) -> tuple[float, str]:
    """Run ``cmd`` to completion; (wall seconds, stdout+stderr). Raises on a non-zero exit."""
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    elapsed = time.perf_counter() - t0
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {result.returncode}:\n{tail}")
    return elapsed, output


def median_timed(cmd_for_rep, reps: int, label: str, **kwargs) -> tuple[float, list[float], str]:
    """Median wall time of ``reps`` runs of ``cmd_for_rep(i)``; also every time and the last
    output."""
    times, output = [], ""
    for i in range(reps):
        elapsed, output = run_timed(cmd_for_rep(i), **kwargs)
        times.append(elapsed)
        say(f"    {label} rep {i + 1}/{reps}: {elapsed:.2f} s")
    return statistics.median(times), times, output


def find_anchor_python() -> tuple[str | None, str]:
    """The anchor venv's python (setup.sh builds it on first use), or None and why."""
    setup = ANCHOR_DIR / "setup.sh"
    if not setup.exists():
        return None, f"anchor skipped: {setup} not found (expected ../shared beside the repo)"
    try:
        result = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return None, "anchor skipped: setup.sh took over 30 minutes"
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not Path(lines[-1]).exists():
        return None, f"anchor skipped: setup.sh failed ({(result.stderr or result.stdout).strip()[-300:]})"
    return lines[-1], ""


def ours_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # both sides use torch's default for the machine
    return env


def anchor_cmd(bench: Bench, script: str, *args: str) -> list[str]:
    return [bench.anchor_python, str(ANCHOR_DIR / script), *args]


def parse_float(pattern: str, text: str, default: float | None = None) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else default


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def run_alone(section: str, run, quick: bool, reps: int, anchor: bool = True) -> int:
    """A bench section run as a script of its own: ``run(bench)`` in a work folder removed
    afterwards, the anchor found (unless ``anchor`` is false), then each figure on a line."""
    import shutil
    import tempfile

    anchor_python, why = find_anchor_python() if anchor else (None, "the anchor is left out")
    workdir = Path(tempfile.mkdtemp(prefix=f"grok-bench-{section}-"))
    bench = Bench(quick=quick, reps=reps, workdir=workdir, anchor_python=anchor_python, anchor_why_not=why)
    try:
        run(bench)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for f in bench.figures:
        say(f"{f.name}: ours {f.ours}, other {f.anchor}, ratio {fmt_ratio(f.ratio)} {f.verdict} {f.note}")
    return 0
