"""A run whose loss or weights stop being finite stops there, says so on disk and at the
command line, and its NaN weights are never studied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grok_engine.train as train_module
from grok_engine.config import RunConfig
from grok_engine.context import context_for, context_from_weights
from grok_engine.errors import GrokError
from grok_engine.store import RunStore
from grok_engine.train import Checkpoint, Diverged, Trainer
from grok_tui.cli import main

# lr 10 (allowed) blows the notebook's model up within a few epochs
BLOWS_UP = dict(task="mod_add", p=23, frac_train=0.3, n_heads=2, d_model=32, d_head=16, d_mlp=64,
                epochs=400, checkpoint_every=2, device="cpu", lr=10.0)
CLI_BLOWS_UP = ["--task", "mod_add", "--p", "23", "--frac-train", "0.3", "--n-heads", "2",
                "--d-model", "32", "--d-head", "16", "--d-mlp", "64", "--device", "cpu",
                "--lr", "10", "--epochs", "400", "--checkpoint-every", "2", "--quiet"]


def first_bad_epoch(metrics) -> int:
    bad = ~np.isfinite(metrics.train_loss) | ~np.isfinite(metrics.test_loss)  # eval_every 1
    return int(metrics.epoch[np.nonzero(bad)[0][0]])


@pytest.mark.parametrize("act_fn", ["relu", "gelu"])  # the numpy path, autograd
def test_a_nan_loss_stops_training_and_marks_the_run(runs_dir, act_fn):
    store = RunStore(runs_dir)
    run = store.create(RunConfig().replace(**BLOWS_UP, act_fn=act_fn), run_id="nan")
    trainer = run.trainer()
    assert trainer.manual == (act_fn == "relu")
    events: list = []
    trainer.run(callback=lambda e: (events.append(e), run(e)))

    d = trainer.diverged
    assert isinstance(d, Diverged) and isinstance(events[-1], Diverged)
    assert 0 < d.epoch < 50 and "loss is nan" in d.reason
    metrics = store.open("nan").metrics()
    assert metrics.epoch[-1] == d.epoch == first_bad_epoch(metrics)  # the rows end at the first bad one
    assert np.isfinite(metrics.train_loss[:-1]).all()
    if trainer.manual:
        assert trainer.epoch == d.epoch  # the numpy path has the loss at once: it stops there
    # no checkpoint of the blown-up weights: every one on disk is finite, the last before it
    saved = [e.epoch for e in events if isinstance(e, Checkpoint)]
    assert saved == run.checkpoint_epochs() and saved[-1] < d.epoch
    for epoch in saved:
        assert all(torch.isfinite(w).all() for w in run.load_checkpoint(epoch).values())
    reopened = store.open("nan")
    assert reopened.diverged() == {"epoch": d.epoch, "reason": d.reason}
    assert reopened.summary().diverged_epoch == d.epoch
    with pytest.raises(GrokError, match=f"diverged at epoch {d.epoch}"):
        reopened.trainer()


def test_a_run_that_trains_is_not_marked(runs_dir):
    """eval_every > 1 leaves NaN test losses by design: that is no divergence."""
    store = RunStore(runs_dir)
    run = store.create(RunConfig().replace(**{**BLOWS_UP, "lr": 1e-3, "epochs": 12}, eval_every=5),
                       run_id="fine")
    trainer = run.trainer()
    trainer.run(callback=run)
    assert trainer.diverged is None and trainer.epoch == 12
    assert store.open("fine").summary().diverged_epoch is None


def test_a_non_finite_weight_at_a_checkpoint_stops_training(monkeypatch):
    """The second check: weights are finite-checked before each checkpoint is handed out
    (here with the loss check switched off)."""
    monkeypatch.setattr(train_module, "first_nonfinite_row", lambda chunk, evaluated: None)
    trainer = Trainer(RunConfig().replace(**BLOWS_UP))
    events: list = []
    trainer.run(callback=events.append)
    d = trainer.diverged
    assert d is not None and "is not finite" in d.reason
    assert d.epoch % BLOWS_UP["checkpoint_every"] == 0  # found at a checkpoint
    checkpoints = [e for e in events if isinstance(e, Checkpoint)]
    assert checkpoints[-1].epoch < d.epoch
    assert all(torch.isfinite(w).all() for e in checkpoints for w in e.weights.values())


def test_train_command_prints_the_diverged_line_and_exits_3(runs_dir, capsys):
    assert main(["train", *CLI_BLOWS_UP, "--run-id", "nan", "--runs-dir", str(runs_dir)]) == 3
    out = capsys.readouterr()
    epoch = RunStore(runs_dir).open("nan").diverged()["epoch"]
    assert out.out.startswith(f"diverged: run nan at epoch {epoch} (")
    assert "Traceback" not in out.err and "RuntimeWarning" not in out.err
    # resuming it is refused in one line
    assert main(["train", "--resume", "nan", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"diverged at epoch {epoch}" in err[0]
    # and `runs` says so on its row
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "nan" in line)
    assert f"diverged at {epoch}" in row


def test_studies_refuse_a_nan_checkpoint(runs_dir, capsys, tiny_factory):
    config = tiny_factory.config("mod_add", 11)
    weights = tiny_factory.weights(config)
    weights["blocks.0.mlp.W_in"][0, 0] = float("nan")
    with pytest.raises(GrokError, match=r"non-finite weights \(blocks.0.mlp.W_in"):
        context_from_weights(config, weights)
    # a NaN checkpoint on disk (a run from before this check): the export is one line, exit 2
    run = RunStore(runs_dir).create(config, run_id="old")
    trainer = run.trainer()
    trainer.run(callback=run, until_epoch=1)
    event = trainer._checkpoint()
    event.weights = weights
    run.write_checkpoint(event)
    with pytest.raises(GrokError, match="checkpoint epoch=1 of run old has non-finite weights"):
        context_for(run, 1)
    assert main(["export", "old", "--checkpoint", "1", "--all", "--out", str(runs_dir / "x"),
                 "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite weights" in err[0]
