"""One trainer per run (a flock'ed ``.lock``), and the temporary files of killed writes
cleared by the next one."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grok_engine.config import RunConfig
from grok_engine.run_lock import RunLocked
from grok_engine.store import RunStore
from grok_engine.train_process import train as train_process

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--task", "mod_add", "--p", "7", "--frac-train", "0.5", "--n-heads", "2", "--d-model", "32",
        "--d-head", "16", "--d-mlp", "64", "--device", "cpu", "--quiet"]
# Holds a run's lock until killed, the way a trainer does.
HOLDER = ("import sys, time; from grok_engine.store import RunStore; "
          "lock = RunStore(sys.argv[1]).open(sys.argv[2]).lock(); print('locked', flush=True); "
          "time.sleep(600)")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "grok_tui.cli", *args]


def tiny_run(runs_dir: Path, run_id: str = "r"):
    config = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, n_heads=2, d_model=32, d_head=16,
                                 d_mlp=64, epochs=6, checkpoint_every=3, device="cpu")
    return RunStore(runs_dir).create(config, run_id=run_id)


def hold_lock(runs_dir: Path, run_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(runs_dir), run_id], env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    return proc


def test_a_second_trainer_is_refused_naming_the_first(runs_dir):
    """Two real `grok-tui train` processes on one run: the second gets one line naming the
    run and the first one's pid, exit 2, and changes nothing; once the first is SIGKILLed
    the kernel has dropped its lock and a resume goes ahead."""
    run_dir = runs_dir / "r"
    first = subprocess.Popen(cli("train", *TINY, "--epochs", "1000000", "--checkpoint-every", "100000",
                                 "--run-id", "r", "--runs-dir", str(runs_dir)),
                             env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "epoch_000000.safetensors").exists():
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        config_before = (run_dir / "config.json").read_bytes()
        second = subprocess.run(cli("train", "--resume", "r", "--epochs", "50", "--runs-dir", str(runs_dir)),
                                env=CHILD_ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"run r is being trained by process {first.pid}" in lines[0]
        assert (run_dir / "config.json").read_bytes() == config_before  # its --epochs 50 not written
        assert first.poll() is None  # the first trains on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = subprocess.run(cli("train", "--resume", "r", "--epochs", "5", "--quiet", "--runs-dir", str(runs_dir)),
                           env=CHILD_ENV, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert RunStore(runs_dir).open("r").checkpoint_epochs()[-1] == 5


def test_the_lock_is_refused_to_other_processes_until_released(runs_dir):
    run = tiny_run(runs_dir)
    holder = hold_lock(runs_dir, "r")
    try:
        with pytest.raises(RunLocked, match=f"run r is being trained by process {holder.pid}"):
            run.lock()
        with pytest.raises(RunLocked):  # a change of plan waits for the trainer too
            RunStore(runs_dir).extend_epochs(run, 12)
        out = io.StringIO()  # the app's training process: one error event
        assert train_process(str(runs_dir), "r", None, out, io.StringIO()) == 1
        last = json.loads(out.getvalue().splitlines()[-1])
        assert last["event"] == "error" and f"process {holder.pid}" in last["message"]
    finally:
        holder.kill()
        holder.wait()
    assert RunStore(runs_dir).open("r").config.train.epochs == 6
    with run.lock(), run.lock():  # free again; and re-entrant within a process
        RunStore(runs_dir).extend_epochs(run, 12)
    assert RunStore(runs_dir).open("r").config.train.epochs == 12


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_taking_the_lock_clears_temp_files_of_killed_writes(runs_dir):
    run = tiny_run(runs_dir)
    run.trainer().run(callback=run, until_epoch=3)
    dead, me = dead_pid(), os.getpid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        leftovers = {
            f".tmp-{dead}-epoch_000006.safetensors": "checkpoints",
            f".tmp-{me}-epoch_000006.safetensors": "resume",          # ours, from a failed write
            f".tmp-{alive.pid}-metrics.safetensors": "",               # only a lock holder writes here
            f".tmp-{dead}-progress.safetensors": "analysis",
        }
        kept = {f".tmp-{alive.pid}-progress.safetensors": "analysis"}  # a live app's study cache
        for name, folder in {**leftovers, **kept}.items():
            (run.path / folder).mkdir(exist_ok=True)
            (run.path / folder / name).write_bytes(b"half a file")
        with run.lock():
            for name, folder in leftovers.items():
                assert not (run.path / folder / name).exists(), name
            for name, folder in kept.items():
                assert (run.path / folder / name).exists(), name
        # and the run is whole: it loads and resumes
        resumed = RunStore(runs_dir).open("r")
        assert resumed.verify_checkpoints() == [] and resumed.trainer().epoch == 3
    finally:
        alive.kill()
        alive.wait()


def test_held_elsewhere_sees_another_process_holding_the_lock(runs_dir):
    """What the app asks to label a run "training in another process": true while another
    process holds the lock, false once it is gone (its pid is still in the file), and
    false for this process's own lock."""
    from grok_engine.run_lock import RunLock, held_elsewhere

    store = RunStore(runs_dir)
    run = store.create(RunConfig().replace(task="mod_add", p=7, epochs=2, device="cpu"), run_id="h")
    assert not held_elsewhere(run.path)  # no lock file yet
    holder = hold_lock(runs_dir, "h")
    try:
        assert held_elsewhere(run.path)
    finally:
        holder.kill()
        holder.wait()
    assert not held_elsewhere(run.path)
    with RunLock.acquire(run.path, run.id):
        assert not held_elsewhere(run.path)
