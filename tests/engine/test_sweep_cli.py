"""``grok-tui sweep`` end to end: every bad grid is one line and exit 2 leaving nothing on
disk; a sweep stopped with Ctrl-C, then SIGKILLed, then resumed finishes every member from
its own last checkpoint, never retrains a finished one, and leaves metrics without gaps or
duplicates, equal to each member trained alone; ``sweeps`` and ``runs`` list it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grok_engine.store import RunStore
from grok_engine.sweep.executor import train_pack_solo
from grok_engine.sweep.grid import GridError
from grok_engine.sweep.store import SweepStore
from grok_tui.cli import main
from tests.cli.test_bad_inputs import CHILD_ENV, run_rows

TINY = ["--task", "mod_add", "--p", "7", "--frac-train", "0.5", "--n-heads", "2", "--d-model", "32",
        "--d-head", "16", "--d-mlp", "64", "--device", "cpu", "--epochs", "20", "--checkpoint-every", "10"]


def bad_sweep_rows(root: Path) -> list[tuple[list[str], str]]:
    runs = str(root / "runs")
    toml = root / "bad-sweep.toml"
    toml.write_text('[task]\np = 7\n[sweep]\n"weight-decay" = []\n')

    def sweep(*argv: str) -> list[str]:
        return ["sweep", *TINY, "--runs-dir", runs, *argv]

    return [
        (sweep("--grid", "wd=1,2"), "'wd' is not a train flag"),
        (sweep("--grid", "weight-decay="), "the axis is empty"),
        (sweep("--grid", "weight-decay=0.1,,1"), "an empty value is not allowed"),
        (sweep("--grid", "weight-decay=heavy"), "'heavy' is not a number"),
        (sweep("--grid", "lr=0.1,0"), "--grid member lr=0.0: lr=0.0 is out of range"),
        (sweep("--grid", "lr=log:1e-3:1:0"), "the axis is empty"),
        (sweep("--grid", "weight-decay=log:1e-3:1:101", "--grid", "lr=log:1e-4:1e-2:100"),
         "more than 10000: give --yes"),
        (sweep("--grid", "epochs=10,20"), "--grid epochs and --epochs both set epochs"),
        (sweep("--grid", "device=cpu"), "device cannot be a grid axis"),
        (sweep(), "needs at least one --grid"),
        (sweep("--config", str(toml)), "[sweep] weight-decay: the axis is empty"),
        (sweep("--grid", "seed=1", "--executor", "slurm"), "invalid choice: 'slurm'"),
        (sweep("--grid", "seed=1", "--ray-address", "h:6379"), "--ray-address h:6379 needs --executor ray"),
        (sweep("--grid", "seed=1", "--sweep-id", "../x"), "sweep id '../x'"),
        (sweep("--grid", "seed=1", "--sweep-id", "taken"), "sweep id 'taken' is taken: a run 'taken-000'"),
        (["sweep", "--resume", "nope", "--runs-dir", runs], "sweep 'nope' does not exist"),
        (["sweep", "--resume", "nope", "--grid", "seed=1", "--runs-dir", runs],
         "--resume nope keeps the sweep's grid and settings: leave out --grid"),
        (["sweeps", "--runs-dir", str(toml)], "is a file, not a folder"),
    ]


def test_every_bad_sweep_is_one_line_exit_2_and_leaves_nothing(tmp_path, tiny_factory):
    root = tmp_path / "world"
    (root / "runs").mkdir(parents=True)
    tiny_factory.trained_run(root / "runs", "taken-000", epochs=2)
    table = bad_sweep_rows(root)
    rows = [{"argv": argv, "cwd": str(root), "env": {"COLUMNS": "80"}} for argv, _ in table]
    results = run_rows(rows, root / "runs", tmp_path)
    failures = []
    for (argv, needle), result in zip(table, results):
        err = result["err"]
        lines = err.strip().splitlines()
        problems = [what for what, bad in (
            (f"exit {result['code']}", result["code"] != 2), ("a traceback", "Traceback" in err),
            (f"{len(lines)} lines on stderr", len(lines) != 1), (f"no {needle!r}", needle not in err),
            (f"changed {result['changed'][:3]}", bool(result["changed"]))) if bad]
        if problems:
            failures.append(f"{argv[-4:]}: {', '.join(problems)}: {err.strip()[-300:]!r}")
    assert not failures, f"{len(failures)} of {len(table)} rows:\n" + "\n".join(failures)


# -- Ctrl-C, SIGKILL, resume ---------------------------------------------------------------
# Two short members (done early) and two long ones; the long ones are still training when
# the sweep is stopped and when it is killed.
KILL_SWEEP = ["--task", "mod_add", "--p", "11", "--frac-train", "0.4", "--n-heads", "2",
              "--d-model", "32", "--d-head", "16", "--d-mlp", "64", "--device", "cpu",
              "--checkpoint-every", "20", "--grid", "epochs=60,1500", "--grid", "seed=1,2", "--quiet"]
LONG = ("kill-002", "kill-003")


def sweep_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "grok_tui.cli", "sweep", *args]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # a group of its own, as a shell job


def resume_epochs(run_dir: Path) -> list[int]:
    try:
        return sorted(int(e[6:12]) for e in os.listdir(run_dir / "resume") if e.startswith("epoch_"))
    except FileNotFoundError:
        return []


def wait_until(proc: subprocess.Popen, ready, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()[1].decode()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def files(run_dir: Path) -> dict[str, int]:
    """checkpoint and metrics files -> mtime_ns."""
    out = {}
    for sub in ("checkpoints", "resume"):
        for entry in os.scandir(run_dir / sub) if (run_dir / sub).is_dir() else ():
            out[f"{sub}/{entry.name}"] = entry.stat().st_mtime_ns
    if (run_dir / "metrics.safetensors").exists():
        out["metrics"] = (run_dir / "metrics.safetensors").stat().st_mtime_ns
    return out


def test_ctrl_c_then_sigkill_then_resume_finishes_every_member_from_its_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    store = SweepStore(runs)
    statuses = lambda: store.statuses(store.open("kill"))  # noqa: E731

    # 1. Ctrl-C (to the whole job, as a terminal sends it) once a long member has a checkpoint
    proc = start(sweep_cli(*KILL_SWEEP, "--sweep-id", "kill", "--runs-dir", str(runs)))
    try:
        wait_until(proc, lambda: any(resume_epochs(runs / rid) for rid in LONG), "a checkpoint")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()
    assert "continue with grok-tui sweep --resume kill" in err.decode()
    assert "Traceback" not in err.decode()
    stopped_at = {rid: RunStore(runs).open(rid).epochs_done() for rid in store.open("kill").run_ids}
    # checkpointed where it stopped (a member its pack had not reached yet stays at 0)
    assert any(0 < stopped_at[rid] < 1500 for rid in LONG) and stopped_at[LONG[1]] < 1500, stopped_at

    # 2. resumed, then SIGKILLed (the driver only: its workers die with it) while training
    proc = start(sweep_cli("--resume", "kill", "--quiet", "--runs-dir", str(runs)))
    try:
        wait_until(proc, lambda: any(max(resume_epochs(runs / rid), default=0) > stopped_at[rid] + 40
                                     for rid in LONG), "progress after the resume")
        wait_until(proc, lambda: "done" in statuses(), "a finished member")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "partial" in statuses(), statuses()
    # the workers die with the driver, but a moment later (PR_SET_PDEATHSIG): read the
    # files once they stop changing, or a write of a dying worker looks like a rewrite
    before, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {rid: files(runs / rid) for rid in store.open("kill").run_ids}
        if now == before:
            break
        before = now
        time.sleep(1.0)
    finished = [rid for rid, s in zip(store.open("kill").run_ids, statuses()) if s == "done"]

    # 3. resumed to the end
    time.sleep(0.5)  # the killed workers' exit (PR_SET_PDEATHSIG) releases their locks
    proc = start(sweep_cli("--resume", "kill", "--quiet", "--runs-dir", str(runs)))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert statuses() == ["done"] * 4, statuses()
    assert "sweep kill: 4 done" in out.decode()

    straight = tmp_path / "straight"
    sweep = store.open("kill")
    resumed: list[int] = []  # the epoch each unfinished member resumed from (-1: not begun)
    for index, rid in enumerate(sweep.run_ids):
        after = files(runs / rid)
        if rid in finished:
            assert after == before[rid], f"{rid} was trained again"
        else:  # resumed from its last (checkpoint, resume state) pair: that and all before kept
            # a worker killed mid-write leaves resume/.tmp-PID-epoch_N...: not a resume state
            ready = max((int(k[-18:-12]) for k in before[rid] if k.startswith("resume/epoch_")), default=-1)
            kept = {k: v for k, v in before[rid].items()
                    if k.startswith("checkpoints/epoch_") and int(k[-18:-12]) <= ready}
            assert all(after.get(k) == v for k, v in kept.items()), (rid, ready)
            resumed.append(ready)
        run = RunStore(runs).open(rid)
        metrics = run.metrics()  # refused unless its epochs are 1, 2, ..., n
        target = sweep.member_config(index).train.epochs
        assert len(metrics) == target and metrics.epoch[-1] == target
        # the same member trained alone, never interrupted
        RunStore(straight).create(run.config, run_id=rid)
        train_pack_solo(straight, [rid])
        alone = RunStore(straight).open(rid)
        # the same checkpoints, plus the one Ctrl-C made where it stopped; same weights
        extra = set(run.checkpoint_epochs()) - set(alone.checkpoint_epochs())
        assert set(alone.checkpoint_epochs()) <= set(run.checkpoint_epochs()), rid
        assert extra <= {stopped_at[rid]}, (rid, extra)
        for name, w in alone.load_checkpoint(target).items():
            np.testing.assert_allclose(run.load_checkpoint(target)[name], w, rtol=1e-5, atol=1e-7)
        for name, column in alone.metrics().as_dict().items():
            np.testing.assert_allclose(metrics.as_dict()[name], column, rtol=1e-5, err_msg=f"{rid} {name}")
    assert any(epoch > 0 for epoch in resumed), resumed  # one was killed mid-run


def test_sweeps_and_runs_list_the_sweep(runs_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    from grok_engine.sweep.grid import members
    from grok_tui.cli.sweep import base_and_axes, build_parser, flag_table

    args = build_parser().parse_args([*TINY, "--grid", "seed=1,2", "--grid", "lr=1e-3,1e-2"])
    base, axes = base_and_axes(args, flag_table())
    sweep = SweepStore(runs_dir).create(base, axes, members(base, axes, flag_table()), sweep_id="lst")
    train_pack_solo(runs_dir, [sweep.run_ids[0]])
    assert main(["sweeps", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│ lst "))
    # members, done, partial, not started (new), diverged
    assert [c.strip() for c in row.split("│")[2:7]] == ["4", "1", "0", "3", "0"], out
    assert "seed(2) lr(2)" in out
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if " task " in line)
    assert header.rstrip(" ┃").endswith("sweep"), out
    rows = [line for line in out.splitlines() if "lst-00" in line]
    assert len(rows) == 4 and all(line.rstrip(" │").endswith(" lst") for line in rows), out


def test_a_toml_sweep_table_makes_the_grid(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[task]\ntask = "mod_add"\np = 7\nfrac_train = 0.5\n'
                    '[model]\nn_heads = 2\nd_model = 32\nd_head = 16\nd_mlp = 64\n'
                    '[train]\nepochs = 5\ndevice = "cpu"\n'
                    '[sweep]\n"weight-decay" = [0.1, 1.0]\nlr = "log:1e-3:1e-2:3"\n')
    from grok_tui.cli.sweep import base_and_axes, build_parser, flag_table

    args = build_parser().parse_args(["--config", str(toml), "--grid", "seed=4,5", "--lr", "0.01"])
    with pytest.raises(GridError, match="--grid lr and --lr both set lr"):
        base_and_axes(args, flag_table())
    args = build_parser().parse_args(["--config", str(toml), "--grid", "seed=4,5"])
    base, axes = base_and_axes(args, flag_table())
    assert [a.flag for a in axes] == ["weight-decay", "lr", "seed"]
    assert base.train.epochs == 5 and base.task.p == 7
    assert np.allclose(axes[1].values, [1e-3, 10 ** -2.5, 1e-2], rtol=1e-9)


def test_stop_at_test_acc_makes_each_member_done_where_it_reached_it(tmp_path, capsys):
    """--stop-at-test-acc: each member stops at its own first epoch with that test
    accuracy, counts as done (kept in sweep.json) and --resume trains it no further."""
    runs = tmp_path / "runs"
    argv = ["sweep", *TINY, "--epochs", "400", "--grid", "seed=1,2", "--stop-at-test-acc", "0.05",
            "--sweep-id", "early", "--runs-dir", str(runs), "--quiet"]
    assert main(argv) == 0
    sweep = SweepStore(runs).open("early")
    assert sweep.stop_at_test_acc == 0.05
    assert SweepStore(runs).statuses(sweep) == ["done", "done"]
    store = RunStore(runs)
    stopped = {}
    for run_id in sweep.run_ids:
        run = store.open(run_id)
        m = run.metrics()
        first = int(m.epoch[np.nonzero(m.test_acc >= 0.05)[0][0]])
        assert run.epochs_done() == first < 400  # stopped at its own epoch, checkpointed there
        stopped[run_id] = (run.epochs_done(), sorted(p.stat().st_mtime_ns for p in run.checkpoint_dir.iterdir()))
    assert main(["sweep", "--resume", "early", "--runs-dir", str(runs), "--quiet"]) == 0
    for run_id in sweep.run_ids:
        run = store.open(run_id)
        assert (run.epochs_done(), sorted(p.stat().st_mtime_ns for p in run.checkpoint_dir.iterdir())) == stopped[run_id]
    assert main(["sweep", "--resume", "early", "--stop-at-test-acc", "0.9", "--runs-dir", str(runs)]) == 2
    assert "leave out --stop-at-test-acc" in capsys.readouterr().err
