"""A run SIGKILLed at random moments and resumed, over and over, ends bit-identical to the
same run never interrupted: the resume state is a snapshot taken at its checkpoint epoch,
not a view of tensors the trainer keeps stepping while the background writer saves them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from grok_engine.store import RunStore

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# The hand-written numpy path with the Grokfast EMA (so its snapshot is checked too); a
# checkpoint every 5 epochs keeps the background writer busy while the trainer runs on.
EPOCHS = 300
TRAIN = ["--task", "mod_add", "--p", "13", "--frac-train", "0.3", "--n-heads", "2", "--d-model", "32",
         "--d-head", "16", "--d-mlp", "64", "--device", "cpu", "--grokfast", "--epochs", str(EPOCHS),
         "--checkpoint-every", "5", "--quiet"]
KILLS = 3


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "grok_tui.cli", "train", *args]


def resume_epochs(run_dir: Path) -> list[int]:
    try:
        return sorted(int(e[6:12]) for e in os.listdir(run_dir / "resume") if e.startswith("epoch_"))
    except FileNotFoundError:
        return []


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_and_resume(runs_dir: Path, run_id: str) -> list[int]:
    """Train ``run_id`` through the real command, SIGKILL it at a random moment once it has
    saved a resume state past where it started, resume, KILLS times; then let it finish.
    Returns the epochs it resumed from."""
    rng = random.Random(11)
    run_dir = runs_dir / run_id
    proc = start(cli(*TRAIN, "--run-id", run_id, "--runs-dir", str(runs_dir)))
    resumed_from, begun = [], -1
    try:
        for _ in range(KILLS):
            deadline = time.monotonic() + 120
            while not any(e > begun for e in resume_epochs(run_dir)):
                if proc.poll() is not None:
                    break  # finished (or failed) before the kill: checked below
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.01)
            if proc.poll() is not None:
                break
            time.sleep(rng.uniform(0.0, 0.15))  # anywhere in the run, writes in flight
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            begun = max(resume_epochs(run_dir))
            resumed_from.append(begun)
            proc = start(cli("--resume", run_id, "--quiet", "--runs-dir", str(runs_dir)))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return resumed_from


def test_killed_and_resumed_run_is_bit_identical_to_a_straight_run(runs_dir):
    straight = start(cli(*TRAIN, "--run-id", "straight", "--runs-dir", str(runs_dir)))
    try:
        resumed_from = kill_and_resume(runs_dir, "killed")
        _, err = straight.communicate(timeout=300)
        assert straight.returncode == 0, err.decode()
    finally:
        if straight.poll() is None:
            straight.kill()
            straight.wait()
    # killed mid-run several times, each after progress (else the test proves nothing)
    assert len(resumed_from) >= 3 and resumed_from == sorted(set(resumed_from)), resumed_from
    assert resumed_from[-1] < EPOCHS

    store = RunStore(runs_dir)
    a, b = store.open("straight"), store.open("killed")
    for name, values in a.metrics().as_dict().items():
        np.testing.assert_array_equal(b.metrics().as_dict()[name], values, err_msg=name)
    assert len(b.metrics()) == EPOCHS
    assert b.checkpoint_epochs() == a.checkpoint_epochs()
    for epoch in a.checkpoint_epochs():
        wa, wb = a.load_checkpoint(epoch), b.load_checkpoint(epoch)
        for name in wa:
            assert torch.equal(wa[name], wb[name]), (epoch, name)
    ra, rb = a.resume_state(EPOCHS), b.resume_state(EPOCHS)
    assert sorted(ra) == sorted(rb)
    for name in ra:
        assert torch.equal(ra[name], rb[name]), name
    # whatever half-written files the kills left, the next trainer removed
    assert [p.name for p in b.path.rglob(".tmp-*")] == []
