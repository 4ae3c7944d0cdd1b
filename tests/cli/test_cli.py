"""The `grok-tui` command's headless side: bad input is one line and exit code 2; a TOML
config trains; Ctrl-C stops cleanly and keeps the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grok_engine.store import RunStore
from grok_tui.cli import main

TINY = ["--task", "mod_add", "--p", "7", "--frac-train", "0.5", "--n-heads", "2", "--d-model", "32",
        "--d-head", "16", "--d-mlp", "64", "--device", "cpu"]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def grok_tui_command() -> list[str]:
    exe = Path(sys.executable).with_name("grok-tui")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "grok_tui.cli"]



@pytest.mark.parametrize("argv, needle", [
    (["train", "--p", "1"], "p=1"),
    (["train", "--frac-train", "2"], "frac_train=2"),
    (["train", "--task", "nope"], "'nope'"),
    (["train", "--bogus"], "--bogus"),
    (["train", "--p", "seven"], "seven"),
    (["train", "--task", "mod_div", "--p", "12"], "p=12"),
    (["train", "--act-fn", "tanh"], "'tanh'"),
    (["train", "--preset", "turbo"], "'turbo'"),
    (["train", "--config", "missing.toml"], "missing.toml"),
    (["import", "missing.pth"], "missing.pth"),
    (["import"], "FILE.pth"),
    (["runs", "--bogus"], "--bogus"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, runs_dir, capsys):
    assert main([*argv, "--runs-dir", str(runs_dir)]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert needle in lines[0] and "Traceback" not in out.err
    assert RunStore(runs_dir).run_ids() == []  # nothing half-created


def test_bad_toml_values_are_refused(tmp_path, runs_dir, capsys):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[task]\np = 7\nmodulus = 3\n')
    broken = tmp_path / "broken.toml"
    broken.write_text('[task\np = 7\n')
    for path, needle in ((unknown, "modulus"), (broken, "broken.toml")):
        assert main(["train", "--config", str(path), "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]


def test_real_command_exit_codes(tmp_path):
    """The installed entry point: exit code 2 and no traceback, exit 0 on an empty runs dir."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cmd = grok_tui_command()
    procs = {
        "p1": subprocess.Popen([*cmd, "train", "--p", "1", "--runs-dir", str(empty)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=CHILD_ENV),
        "runs": subprocess.Popen([*cmd, "runs", "--runs-dir", str(empty)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=CHILD_ENV),
    }
    results = {name: (proc.wait(timeout=120), *proc.communicate()) for name, proc in procs.items()}
    rc, out, err = results["p1"]
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "p=1" in err and "Traceback" not in err
    rc, out, err = results["runs"]
    assert rc == 0 and "no runs" in out and err == ""


def test_runs_on_missing_and_empty_dir(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "nowhere")]) == 0
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out


def test_config_toml_trains_and_flags_override(tmp_path, runs_dir, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[task]\ntask = "mod_sub"\np = 7\nfrac_train = 0.5\ndata_seed = 4\n'
        '[model]\nn_heads = 2\nd_model = 32\nd_head = 16\nd_mlp = 64\nseed = 3\n'
        '[train]\nepochs = 6\ncheckpoint_every = 2\ndevice = "cpu"\nlr = 2e-3\n')
    rc = main(["train", "--config", str(config), "--epochs", "8", "--quiet", "--run-id", "toml",
               "--runs-dir", str(runs_dir)])
    assert rc == 0, capsys.readouterr().err
    assert "toml" in capsys.readouterr().out
    run = RunStore(runs_dir).open("toml")
    c = run.config
    assert (c.task.task, c.task.p, c.task.frac_train, c.task.data_seed) == ("mod_sub", 7, 0.5, 4)
    assert (c.model.n_heads, c.model.d_model, c.model.seed, c.train.lr) == (2, 32, 3, 2e-3)
    assert c.train.epochs == 8  # the flag wins over the file
    assert run.checkpoint_epochs() == [0, 2, 4, 6, 8]
    assert len(run.metrics()) == 8


def test_train_resume_continues_a_run(runs_dir, capsys):
    base = [*TINY, "--quiet", "--checkpoint-every", "3", "--runs-dir", str(runs_dir)]
    assert main(["train", *base, "--epochs", "4", "--run-id", "r"]) == 0
    assert main(["train", "--resume", "r", "--epochs", "9", "--quiet", "--runs-dir", str(runs_dir)]) == 0
    run = RunStore(runs_dir).open("r")
    assert run.checkpoint_epochs() == [0, 3, 4, 6, 9]
    assert list(run.metrics().epoch) == list(range(1, 10))
    assert main(["train", "--resume", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert "'nope'" in capsys.readouterr().err


def endless_training(runs_dir: Path, run_id: str) -> subprocess.Popen:
    """The real command training a tiny run for a million epochs (until interrupted)."""
    return subprocess.Popen(
        [*grok_tui_command(), "train", *TINY, "--epochs", "1000000", "--checkpoint-every", "100000",
         "--quiet", "--run-id", run_id, "--runs-dir", str(runs_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)


def wait_for_training(proc: subprocess.Popen, run_dir: Path) -> None:
    """Until checkpoint 0 and its metrics are written: from inside trainer.run, after the
    SIGINT handler is set, so the loop is running."""
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.safetensors").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.02)


def test_sigint_stops_cleanly_and_keeps_the_run(runs_dir):
    run_dir = runs_dir / "interrupted"
    proc = endless_training(runs_dir, "interrupted")
    try:
        wait_for_training(proc, run_dir)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    run = RunStore(runs_dir).open("interrupted")
    stop_epoch = run.checkpoint_epochs()[-1]
    assert run.checkpoint_epochs() == [0, stop_epoch] and stop_epoch > 0
    assert f"epochs {stop_epoch}" in out
    assert len(run.metrics()) == stop_epoch
    run.load_checkpoint(stop_epoch)
    trainer = run.trainer()
    assert trainer.epoch == stop_epoch  # resumable from where it stopped


def test_resume_takes_flags_that_change_nothing_and_refuses_the_rest(runs_dir, capsys):
    base = [*TINY, "--quiet", "--checkpoint-every", "2", "--runs-dir", str(runs_dir)]
    assert main(["train", *base, "--epochs", "4", "--run-id", "r"]) == 0
    config_file = runs_dir / "r" / "config.json"
    before = config_file.read_bytes()
    assert main(["train", "--resume", "r", "--p", "50", "--lr", "0.5", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--p 50 (the run has p=7); --lr 0.5 (the run has lr=0.001)" in err[0]
    assert config_file.read_bytes() == before and RunStore(runs_dir).open("r").epochs_done() == 4
    # the stored values, a longer run, the device, quiet and a stop rule are all allowed
    assert main(["train", "--resume", "r", *TINY, "--lr", "1e-3", "--epochs", "6", "--quiet",
                 "--stop-at-test-acc", "1", "--runs-dir", str(runs_dir)]) == 0
    assert RunStore(runs_dir).open("r").epochs_done() == 6
    expected = json.loads(before)
    expected["train"]["epochs"] = 6  # the one change: the plan, made longer
    assert json.loads(config_file.read_bytes()) == expected
    assert main(["train", "--resume", "r", "--epochs", "5", "--runs-dir", str(runs_dir)]) == 2
    assert "--epochs 5 is below the 6 epochs run r has done" in capsys.readouterr().err


def test_a_read_only_file_system_is_refused_before_anything_is_made(tmp_path, monkeypatch, capsys):
    real = os.statvfs

    class ReadOnly:
        def __init__(self, path):
            self.f_flag = real(path).f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", ReadOnly)
    runs = tmp_path / "new" / "runs"
    assert main(["train", *TINY, "--epochs", "2", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "read-only file system" in err[0]
    assert not (tmp_path / "new").exists()


def test_ctrl_c_handler_raises_once_and_only_inside_the_loop():
    import threading

    from grok_tui.cli.train import _CtrlC

    stop = threading.Event()
    handler = _CtrlC(stop)
    handler(signal.SIGINT, None)
    assert stop.is_set()  # the first: stop after the epoch
    handler(signal.SIGINT, None)  # the second, outside the loop: ignored
    handler = _CtrlC(threading.Event())
    handler.may_raise = True
    handler(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)  # the second, inside the loop: stop now
    handler.may_raise = True
    handler(signal.SIGINT, None)  # any later one: ignored while the run is written


@pytest.mark.parametrize("gap_s", [0.0, 0.02, 0.2])
def test_repeated_ctrl_c_never_prints_a_traceback(runs_dir, gap_s):
    run_dir = runs_dir / "twice"
    proc = endless_training(runs_dir, "twice")
    try:
        wait_for_training(proc, run_dir)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(gap_s)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    run = RunStore(runs_dir).open("twice")
    for epoch in run.checkpoint_epochs():
        run.load_checkpoint(epoch)
    assert run.trainer().epoch == run.epochs_done()


def test_ctrl_c_while_starting_is_one_line(runs_dir):
    proc = subprocess.Popen([*grok_tui_command(), "train", *TINY, "--quiet", "--runs-dir", str(runs_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    time.sleep(0.5)  # importing torch takes seconds
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "grok-tui: interrupted", err
