"""The memory estimate: close to what training really takes, and a run that does not fit is
refused before anything is created (``--force`` trains it anyway)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import grok_engine.memory as memory
import grok_engine.train as train_module
from grok_engine.config import RunConfig
from grok_engine.store import RunStore
from grok_tui.cli import main

TINY = ["--task", "mod_add", "--p", "7", "--frac-train", "0.5", "--n-heads", "2", "--d-model", "32",
        "--d-head", "16", "--d-mlp", "64", "--device", "cpu", "--epochs", "4", "--quiet"]

# Peak RSS of training (with the background writer) minus the RSS before the trainer is
# built, in a fresh process; Linux's VmHWM is reset through clear_refs once warm.
MEASURE = textwrap.dedent("""
    import json, sys, tempfile
    import torch
    from grok_engine.config import RunConfig
    from grok_engine.memory import estimate
    from grok_engine.store import AsyncWriter, RunStore
    from grok_engine.train import Trainer

    def status_kb(field):
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith(field + ":"))

    torch.set_num_threads(1)
    cfg = RunConfig.from_dict(json.loads(sys.argv[1]))
    # torch's, numba's (the numpy path's compiled loop) and the allocator's one-off costs:
    # one small run on each training path (p=37: autograd; p=7: numpy)
    warm = [cfg.replace(p=37, d_model=16, d_mlp=16, n_heads=1, d_head=16, epochs=2),
            cfg.replace(p=7, d_model=16, d_mlp=16, n_heads=cfg.model.n_heads, d_head=4, epochs=2)]
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        for i, config in enumerate(warm):
            with AsyncWriter(store.create(config, run_id=f"warm-{i}")) as w:
                Trainer(config).run(callback=w)
        run = store.create(cfg, run_id="m")
        base = status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        trainer = run.trainer()
        with AsyncWriter(run) as w:
            trainer.run(callback=w)
        peak = status_kb("VmHWM")
    print(json.dumps({"measured": (peak - base) * 1024, "estimate": estimate(cfg, "cpu").total,
                      "manual": trainer.manual}))
""")

MEASURED = {  # activations dominate (autograd, 1 and 2 layers); weights and checkpoints do
    "one_layer": dict(task="mod_add", p=97, frac_train=0.5, d_model=32, n_heads=2, d_head=16,
                      d_mlp=1024, epochs=2, checkpoint_every=1, device="cpu"),
    "two_layers": dict(task="mod_add", p=47, frac_train=0.5, n_layers=2, d_model=32, n_heads=2,
                       d_head=16, d_mlp=2048, epochs=2, checkpoint_every=1, device="cpu"),
    "big_weights": dict(task="mod_add", p=11, frac_train=0.5, d_model=256, n_heads=4, d_head=64,
                        d_mlp=4096, epochs=12, checkpoint_every=1, device="cpu"),
}


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's VmHWM reset")
def test_estimate_is_near_the_measured_peak():
    procs = {}
    for name, fields in MEASURED.items():
        config = json.dumps(RunConfig().replace(**fields).to_dict())
        procs[name] = subprocess.Popen([sys.executable, "-c", MEASURE, config], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True,
                                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results[name] = json.loads(out)
    assert results["big_weights"]["manual"] and not results["one_layer"]["manual"]
    for name, r in results.items():
        assert r["measured"] > 40 << 20, (name, r)  # well above the noise
        ratio = r["estimate"] / r["measured"]
        assert 0.7 < ratio < 2.0, (name, r)  # measured 1.05 .. 1.45 when written


def test_the_issues_configs_are_estimated_far_beyond_small_machines():
    default = RunConfig()
    assert memory.estimate(default).total < 64 << 20  # the notebook's run: tens of MiB
    assert memory.estimate(default.replace(p=1000)).activations > 16 << 30
    wide = memory.estimate(default.replace(d_model=8192, d_mlp=65536))
    assert wide.state > 16 << 30 and wide.checkpoints > wide.state  # host copies of 1e9 weights


def test_a_run_too_large_is_refused_before_anything_exists(tmp_path, monkeypatch, capsys):
    def no_trainer(*args, **kwargs):
        raise AssertionError("the trainer was built")

    monkeypatch.setattr(train_module.Trainer, "__init__", no_trainer)
    runs_dir = tmp_path / "runs"
    for flags in (["--p", "1000", "--d-mlp", "65536"], ["--d-model", "8192", "--d-mlp", "65536"]):
        assert main(["train", *flags, "--device", "cpu", "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "needs about" in err[0] and "is available" in err[0] and "--force" in err[0]
        assert "GiB" in err[0] and "activations" in err[0]
    assert not runs_dir.exists()  # nothing created on disk


def test_force_trains_a_run_the_estimate_refuses(runs_dir, monkeypatch, capsys):
    monkeypatch.setattr(memory, "host_available", lambda: 1 << 20)  # a 1 MiB machine
    base = [*TINY, "--runs-dir", str(runs_dir)]
    assert main(["train", *base, "--run-id", "small"]) == 2
    assert "but 1 MiB is available" in capsys.readouterr().err
    assert RunStore(runs_dir).run_ids() == []
    assert main(["train", *base, "--run-id", "small", "--force"]) == 0
    # a resume is checked too, and the refusal lets go of the run's lock
    assert main(["train", "--resume", "small", "--epochs", "6", "--quiet", "--runs-dir", str(runs_dir)]) == 2
    assert RunStore(runs_dir).open("small").config.train.epochs == 4  # refused before any change
    assert main(["train", "--resume", "small", "--epochs", "6", "--quiet", "--force",
                 "--runs-dir", str(runs_dir)]) == 0
    assert RunStore(runs_dir).open("small").checkpoint_epochs()[-1] == 6
