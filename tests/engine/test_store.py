"""The run store: SIGKILL at any moment leaves a run that loads and resumes; a corrupt
checkpoint is named and does not stop anything else from loading."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.errors import CorruptCheckpoint, GrokError
from grok_engine.store import RunStore
from tests.fixtures import tiny_config as shared_tiny_config

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_config(**overrides) -> RunConfig:
    return shared_tiny_config(**{"task": "mod_add", "p": 7, "frac_train": 0.5, "epochs": 30,
                                 "checkpoint_every": 10, **overrides})


def trained_run(store: RunStore, run_id: str, epochs: int = 30, **overrides):
    run = store.create(tiny_config(epochs=epochs, **overrides), run_id=run_id)
    run.trainer().run(callback=run)
    return store.open(run_id)


# -- SIGKILL ---------------------------------------------------------------------------

VICTIM = textwrap.dedent("""
    import sys
    from grok_engine.config import RunConfig
    from grok_engine.store import RunStore
    cfg = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, n_heads=2, d_model=32,
                              d_head=16, d_mlp=64, epochs=1_000_000, checkpoint_every=3,
                              device="cpu")
    store = RunStore(sys.argv[1])
    run = store.create(cfg, run_id="victim")
    run.trainer().run(callback=run)
""")


def tmp_files(run_dir: Path) -> list[str]:
    found = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "resume"):
        try:
            found += [e for e in os.listdir(folder) if e.startswith(".tmp")]
        except FileNotFoundError:
            pass
    return found


def n_checkpoints(run_dir: Path) -> int:
    try:
        return sum(1 for e in os.listdir(run_dir / "checkpoints") if e.startswith("epoch_"))
    except FileNotFoundError:
        return 0


# When to pull the plug: as soon as the run folder is a run; while a file is half written;
# after several checkpoints.
KILL_WHEN = {
    "at_creation": lambda d: (d / "config.json").exists(),
    "mid_write": lambda d: n_checkpoints(d) >= 2 and bool(tmp_files(d)),
    "after_checkpoints": lambda d: n_checkpoints(d) >= 8,
}


def test_sigkill_at_any_moment_leaves_a_loadable_resumable_run(tmp_path):
    procs = {}
    for moment in KILL_WHEN:
        runs_dir = tmp_path / moment
        procs[moment] = subprocess.Popen([sys.executable, "-c", VICTIM, str(runs_dir)], env=CHILD_ENV,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pending = dict(procs)
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            for moment, proc in list(pending.items()):
                run_dir = tmp_path / moment / "victim"
                if proc.poll() is not None:
                    pytest.fail(f"{moment}: the victim exited by itself: {proc.stderr.read().decode()}")
                if KILL_WHEN[moment](run_dir):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    del pending[moment]
            time.sleep(0.0005)  # poll fast enough to catch a file mid-write, yield the CPU
        assert not pending, f"never reached the kill moment: {sorted(pending)}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    metric_gaps = []  # (moment, resumed at, metrics held) where the store bug below struck
    for moment in KILL_WHEN:
        store = RunStore(tmp_path / moment)
        assert store.run_ids() == ["victim"], moment
        run = store.open("victim")
        epochs = run.checkpoint_epochs()
        for epoch in epochs:  # every checkpoint file present loads
            run.load_checkpoint(epoch)
        assert run.verify_checkpoints() == []
        metrics = run.metrics()
        assert list(metrics.epoch) == list(range(1, len(metrics) + 1)), moment
        assert run.summary().error is None
        trainer = run.trainer()
        assert trainer.epoch in [0] + epochs
        start = trainer.epoch
        trainer.run(callback=run, until_epoch=start + 5)
        done = store.open("victim")
        assert done.checkpoint_epochs()[-1] == start + 5
        assert done.verify_checkpoints() == []
        resumed_epochs = list(done.metrics().epoch)
        assert resumed_epochs[-5:] == list(range(start + 1, start + 6)), moment
        if resumed_epochs != list(range(1, start + 6)):
            metric_gaps.append((moment, start, len(trainer.metrics) - 5))
        if moment == "after_checkpoints":
            assert epochs[-1] >= 21  # 8 checkpoints every 3 epochs (0, 3, ..., 21)
    assert not metric_gaps, f"metrics gap after resume {metric_gaps}"


def test_crash_between_resume_state_and_metrics_resumes_without_gap(runs_dir):
    """The state a SIGKILL leaves when it lands after write_checkpoint has saved the weights
    and the resume state of epoch 20 but before metrics.safetensors was rewritten."""
    store = RunStore(runs_dir)
    run = store.create(tiny_config(epochs=30), run_id="gap")
    trainer = run.trainer()
    trainer.run(callback=run, until_epoch=10)
    saved = runs_dir / "metrics-at-10"
    shutil.copy(run.path / "metrics.safetensors", saved)
    trainer.run(callback=run, until_epoch=20)
    shutil.copy(saved, run.path / "metrics.safetensors")

    reopened = store.open("gap")
    resumed = reopened.trainer()
    resumed.run(callback=reopened)
    assert list(store.open("gap").metrics().epoch) == list(range(1, 31))


def test_killed_within_the_first_checkpoint_starts_afresh(runs_dir):
    """A SIGKILL after the init's checkpoint (epoch 0) but before its resume state (the
    state the SIGKILL test met under load): the run trains from the same init, to the
    numbers of a run never killed. A later checkpoint without any resume state is refused."""
    store = RunStore(runs_dir)
    straight = trained_run(store, "straight")
    run = store.create(tiny_config(), run_id="killed")
    run.trainer().run(callback=run, until_epoch=0)
    shutil.rmtree(run.path / "resume")
    assert run.checkpoint_epochs() == [0] and run.resume_epochs() == []
    reopened = store.open("killed")
    reopened.trainer().run(callback=reopened)
    done = store.open("killed")
    assert done.checkpoint_epochs() == straight.checkpoint_epochs()
    np.testing.assert_array_equal(done.metrics().test_loss, straight.metrics().test_loss)
    for name, value in straight.load_checkpoint(30).items():
        torch.testing.assert_close(done.load_checkpoint(30)[name], value, rtol=0, atol=0)

    shutil.rmtree(done.path / "resume")  # checkpoints 0..30 and no resume state at all
    with pytest.raises(GrokError, match="cannot resume: no checkpoint has its optimizer state"):
        store.open("killed").trainer()


# -- corrupt checkpoints ----------------------------------------------------------------

def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"\xff" * 16  # the header length and the start of the JSON header
    path.write_bytes(bytes(data))


def test_corrupt_checkpoints_are_named_and_isolated(runs_dir):
    store = RunStore(runs_dir)
    bad = trained_run(store, "bad", epochs=30)
    good = trained_run(store, "good", epochs=20)
    assert {0, 10, 20, 30} <= set(bad.checkpoint_epochs())  # and dense ones where it moved
    truncate(bad.checkpoint_path(10))
    garble(bad.checkpoint_path(20))

    for epoch in (10, 20):
        with pytest.raises(CorruptCheckpoint) as info:
            bad.load_checkpoint(epoch)
        message = str(info.value)
        assert bad.checkpoint_path(epoch).name in message and "\n" not in message
    problems = bad.verify_checkpoints()
    assert len(problems) == 2
    assert any("epoch_000010" in p for p in problems) and any("epoch_000020" in p for p in problems)

    # the rest of the run, and the other run, still load
    bad.load_checkpoint(0)
    bad.load_checkpoint(30)
    assert len(bad.metrics()) == 30 and bad.summary().error is None
    assert good.verify_checkpoints() == []
    assert set(good.load_checkpoint(20)) == set(good.load_checkpoint(0))
    assert [s.id for s in store.summaries()] == ["bad", "good"]

    # `grok-tui runs` lists both and exits 0
    result = subprocess.run([sys.executable, "-m", "grok_tui.cli", "runs", "--runs-dir", str(runs_dir)],
                            capture_output=True, text=True, env={**CHILD_ENV, "COLUMNS": "200"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "bad" in result.stdout and "good" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_missing_or_wrong_shaped_checkpoint(runs_dir):
    store = RunStore(runs_dir)
    run = trained_run(store, "r", epochs=10)
    with pytest.raises(GrokError, match="epoch=7"):
        run.load_checkpoint(7)
    other = trained_run(store, "wide", epochs=10, d_mlp=32)
    shutil.copy(other.checkpoint_path(10), run.checkpoint_path(10))
    with pytest.raises(CorruptCheckpoint, match="epoch_000010"):
        run.load_checkpoint(10)


def test_unknown_run_lists_the_runs(runs_dir):
    store = RunStore(runs_dir)
    trained_run(store, "alpha", epochs=10)
    with pytest.raises(GrokError) as info:
        store.open("beta")
    assert "'beta'" in str(info.value) and "alpha" in str(info.value)


def test_checkpoint_files_load_as_hooked_transformer_state_dicts(runs_dir):
    """A checkpoint is a HookedTransformer state dict, buffers included, so
    HookedTransformer.load_state_dict(strict=True) would take it as it is."""
    from safetensors.torch import load_file

    run = trained_run(RunStore(runs_dir), "r", epochs=10)
    raw = load_file(str(run.checkpoint_path(10)))
    assert raw["blocks.0.attn.mask"].dtype == torch.bool and raw["blocks.0.attn.mask"].shape == (3, 3)
    assert torch.isinf(raw["blocks.0.attn.IGNORE"]) and raw["blocks.0.attn.IGNORE"] < 0
    weights = run.load_checkpoint(10)
    assert not any(k.endswith((".mask", ".IGNORE")) for k in weights)
    assert np.isfinite(run.metrics().train_loss).all()


# -- file modes and what an unreadable file is called ----------------------------------

def test_files_honour_the_umask(tmp_path):
    """Every file of a run, safetensors included (save_file creates 0600), gets the mode a
    plain open() gives: 0o666 less the umask of the real `grok-tui train`."""
    procs = {}
    for umask in (0o027, 0o002):
        runs_dir = tmp_path / f"umask{umask:o}"
        procs[umask] = subprocess.Popen(
            [sys.executable, "-m", "grok_tui.cli", "train", "--task", "mod_add", "--p", "7",
             "--frac-train", "0.5", "--n-heads", "2", "--d-model", "32", "--d-head", "16", "--d-mlp", "64",
             "--device", "cpu", "--epochs", "4", "--checkpoint-every", "2", "--quiet", "--run-id", "r",
             "--runs-dir", str(runs_dir)], env=CHILD_ENV, umask=umask, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
    for umask, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        run_dir = tmp_path / f"umask{umask:o}" / "r"
        modes = {str(path.relative_to(run_dir)): path.stat().st_mode & 0o777
                 for path in run_dir.rglob("*") if path.is_file()}
        assert {"config.json", "split.safetensors", "metrics.safetensors", ".lock",
                "checkpoints/epoch_000004.safetensors", "resume/epoch_000004.safetensors"} <= set(modes)
        assert modes == {name: 0o666 & ~umask for name in modes}, oct(umask)


def deny(monkeypatch, *denied: Path) -> None:
    """Make ``denied`` unreadable the way the OS does for a file without read permission
    (the tests may run as root, whom chmod does not stop): open() raises PermissionError,
    and safetensors reports it as it does any failure to open, "No such file"."""
    import builtins
    import io

    import grok_engine.store as store_module

    real_open, real_load = builtins.open, store_module.load_file
    names = {str(p) for p in denied}

    def fake_open(file, *args, **kwargs):
        if str(file) in names:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def fake_load(filename, *args, **kwargs):
        if str(filename) in names:
            raise FileNotFoundError(f"No such file or directory: {filename}")
        return real_load(filename, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # what Path.read_text calls
    monkeypatch.setattr(store_module, "load_file", fake_load)


def check_permission_messages(run, store: RunStore) -> None:
    for load, path in ((lambda: run.load_checkpoint(10), run.checkpoint_path(10)),
                       (run.metrics, run.path / "metrics.safetensors")):
        with pytest.raises(CorruptCheckpoint) as info:
            load()
        assert str(info.value) == f"{path} cannot be read: permission denied"
    with pytest.raises(GrokError) as info:
        store.open(run.id)
    assert str(info.value) == f"{run.path / 'config.json'} cannot be read: permission denied"


def test_an_unreadable_file_is_called_permission_denied(runs_dir, monkeypatch):
    store = RunStore(runs_dir)
    run = trained_run(store, "r", epochs=10)
    files = (run.checkpoint_path(10), run.path / "metrics.safetensors", run.path / "config.json")
    if os.geteuid() == 0:
        deny(monkeypatch, *files)
    else:
        for path in files:
            path.chmod(0)
    check_permission_messages(run, store)
