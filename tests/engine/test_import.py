"""`grok-tui import`: the notebook's torch.save file becomes a run, and its pickle never runs
code.

The file is made here the way the notebook makes it: a dict whose ``config`` is an instance
of TransformerLens 3's ``transformer_lens.config.hooked_transformer_config.
HookedTransformerConfig``. That class does not exist in TransformerLens 4, so a stand-in with
the same module and name is registered in sys.modules only while saving and removed before
loading, exactly like a file from another environment.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.store import RunStore, strip_buffers, with_buffers
from grok_engine.train import Checkpoint, Trainer
from grok_tui.cli import main

TL3_MODULE = "transformer_lens.config.hooked_transformer_config"
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}



@contextlib.contextmanager
def fake_tl3_module():
    """HookedTransformerConfig at its TransformerLens 3 import path, for pickling only."""
    names = ["transformer_lens", "transformer_lens.config", TL3_MODULE]
    saved = {name: sys.modules.get(name) for name in names}
    klass = type("HookedTransformerConfig", (), {})
    klass.__module__ = TL3_MODULE
    klass.__qualname__ = "HookedTransformerConfig"
    modules = {name: types.ModuleType(name) for name in names}
    modules["transformer_lens"].config = modules["transformer_lens.config"]
    modules["transformer_lens.config"].hooked_transformer_config = modules[TL3_MODULE]
    modules[TL3_MODULE].HookedTransformerConfig = klass
    sys.modules.update(modules)
    try:
        yield klass
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def tl3_config(klass, config: RunConfig):
    """The fields TransformerLens 3 pickles that matter here, with their pickled types."""
    cfg = klass()
    t, m = config.task, config.model
    cfg.__dict__.update(
        d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=3, n_layers=m.n_layers,
        n_heads=m.n_heads, d_model=m.d_model, d_head=m.d_head, d_mlp=m.d_mlp, act_fn=m.act_fn,
        normalization_type=None if m.normalization == "none" else "LN", seed=m.seed,
        dtype=torch.float32, attn_scale=np.float64(np.sqrt(m.d_head)), device="cpu",
        positional_embedding_type="standard", init_mode="gpt2", eps=1e-5, use_attn_scale=True,
        initializer_range=np.float64(0.8 / np.sqrt(m.d_model)), n_key_value_heads=None)
    return cfg


def notebook_file(path, config: RunConfig, epochs: int = 30, every: int = 10) -> dict:
    """Train with our trainer and save in the notebook's torch.save format. Returns the dict."""
    trainer = Trainer(config.replace(epochs=epochs, checkpoint_every=every))
    states = []
    # the notebook saves every `every` epochs: our dense checkpoints are left out
    trainer.run(callback=lambda e: states.append(e) if isinstance(e, Checkpoint) and e.epoch
                and e.epoch % every == 0 else None, until_epoch=epochs)
    n_layers = config.model.n_layers
    checkpoints = [with_buffers(s.weights, n_layers) for s in states]
    assert len(checkpoints) == epochs // every
    m = trainer.metrics
    with fake_tl3_module() as klass:
        data = {
            "model": with_buffers(trainer.weights(), n_layers),
            "config": tl3_config(klass, config),
            "checkpoints": checkpoints,
            "checkpoint_epochs": [e - 1 for e in range(every, epochs + 1, every)],  # 0-based, as saved
            "test_losses": [float(x) for x in m.test_loss],
            "train_losses": [float(x) for x in m.train_loss],
            "train_indices": trainer.dataset.train_indices.clone(),
            "test_indices": trainer.dataset.test_indices.clone(),
        }
        torch.save(data, path)
    assert TL3_MODULE not in sys.modules
    return data


@pytest.mark.parametrize("variant", [
    dict(task="add", p=6, frac_train=0.72, data_seed=11),
    dict(task="add", p=5, frac_train=0.6, n_layers=2, act_fn="gelu", normalization="LN", seed=4),
])
def test_import_notebook_file(tmp_path, variant, capsys):
    config = RunConfig().replace(n_heads=2, d_model=32, d_head=16, d_mlp=64, device="cpu", **variant)
    path = tmp_path / "grokking_demo.pth"
    data = notebook_file(path, config)
    runs_dir = tmp_path / "runs"

    assert main(["import", str(path), "--runs-dir", str(runs_dir), "--run-id", "nb"]) == 0
    assert "nb" in capsys.readouterr().out

    run = RunStore(runs_dir).open("nb")
    t, m = run.config.task, run.config.model
    assert (t.task, t.p) == (config.task.task, config.task.p)
    assert m == config.model  # every model field, the seed included, came through
    assert run.checkpoint_epochs() == [10, 20, 30]
    for epoch, state in zip([10, 20, 30], data["checkpoints"]):
        weights = run.load_checkpoint(epoch)
        expected = strip_buffers(state)
        assert sorted(weights) == sorted(expected)
        for name in expected:
            assert torch.equal(weights[name], expected[name]), (epoch, name)
    split = run.dataset()
    assert torch.equal(split.train_indices, data["train_indices"])
    assert torch.equal(split.test_indices, data["test_indices"])
    metrics = run.metrics()
    np.testing.assert_array_equal(metrics.train_loss, data["train_losses"])
    np.testing.assert_array_equal(metrics.test_loss, data["test_losses"])
    assert list(metrics.epoch) == list(range(1, 31))


def test_import_keeps_a_split_the_config_would_not_make(tmp_path):
    """The saved indices win over the data seed (a notebook run may have used any seed)."""
    config = RunConfig().replace(task="add", p=6, frac_train=0.72, n_heads=2, d_model=32, d_head=16,
                                 d_mlp=64, device="cpu", data_seed=77)
    path = tmp_path / "other_seed.pth"
    data = notebook_file(path, config, epochs=10, every=10)
    assert main(["import", str(path), "--runs-dir", str(tmp_path / "runs"), "--run-id", "x"]) == 0
    split = RunStore(tmp_path / "runs").open("x").dataset()
    assert torch.equal(split.train_indices, data["train_indices"])


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["config", "top"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, where, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    evil = Evil(marker)
    if where == "top":
        torch.save(evil, path)
    else:
        torch.save({"model": {}, "config": evil, "checkpoints": [], "checkpoint_epochs": [],
                    "train_losses": [], "test_losses": [], "train_indices": torch.arange(3),
                    "test_indices": torch.arange(3)}, path)
    argv = ["import", str(path), "--runs-dir", str(tmp_path / "runs")]
    if where == "top":  # in-process: the refusal must not lean on a separate process
        assert main(argv) == 2
        stderr = capsys.readouterr().err
    else:  # the real command: exit code 2, one line, no traceback
        result = subprocess.run([sys.executable, "-m", "grok_tui.cli", *argv], capture_output=True,
                                text=True, env=CHILD_ENV, timeout=120)
        assert result.returncode == 2, result.stderr
        stderr = result.stderr
    assert not marker.exists()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and str(path) in lines[0]
    # what it refused, and no advice to load it anyway or to allow-list what it asks for
    assert "posix.system" in lines[0] or "nt.system" in lines[0], lines[0]
    for advice in ("weights_only", "trust", "safe_globals", "allowlist"):
        assert advice not in lines[0], lines[0]
    assert RunStore(tmp_path / "runs").run_ids() == []
    # the file really is malicious: an unrestricted load runs the command
    torch.load(path, weights_only=False)
    assert marker.exists()
