"""Writes tests/data/runs/tiny: the run the app tests and snapshots show.

    .venv/bin/python tests/data/make_tiny_run.py

The run is trained by the project's own trainer (tests.fixtures.make_tiny_run: add p=7, 200
epochs, a checkpoint every 50) and committed, not trained at test time: float32 training
rounds differently on every BLAS kernel (AVX2, AVX-512, SSE), and Adam turns that last-bit
noise into weights that differ by ~4e-4 after 200 epochs (measured between OpenBLAS's
Haswell and Prescott kernels), which moves 4-digit numbers on screen. Tests of what the app
shows must see the same weights on every CPU; the training tests check the trainer itself.
Rerun after a change of the run format or of the tiny config, then update the snapshots.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREATED = "2026-01-01T00:00:00"  # fixed, so no date of the day reaches a snapshot


def commit_run(run_path: Path, name: str) -> Path:
    """The run folder ``run_path`` copied to tests/data/runs/``name`` (replacing it), its
    config.json dated CREATED."""
    config = json.loads((run_path / "config.json").read_text())
    config["created"] = CREATED
    (run_path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    dest = HERE / "runs" / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run_path, dest)
    print(f"wrote {dest}")
    return dest


def main() -> None:
    sys.path.insert(0, str(HERE.parents[1]))  # a script, not under pytest: the repository root
    from tests.fixtures import make_tiny_run

    with tempfile.TemporaryDirectory() as tmp:
        commit_run(make_tiny_run(Path(tmp), "tiny").path, "tiny")


if __name__ == "__main__":
    main()
