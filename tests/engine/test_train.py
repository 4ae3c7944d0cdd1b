"""The trainer: bit-identical reruns on the CPU, and a resume that changes nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.store import RunStore
from grok_engine.train import Checkpoint, Metrics, Progress, Trainer
from tests.fixtures import tiny_config as shared_tiny_config


def tiny_config(**overrides) -> RunConfig:
    return shared_tiny_config(**{"task": "mod_add", "p": 11, "frac_train": 0.5, "epochs": 60,
                                 "checkpoint_every": 10, **overrides})


def assert_metrics_equal(a: Metrics, b: Metrics) -> None:
    for name, values in a.as_dict().items():
        np.testing.assert_array_equal(values, b.as_dict()[name], err_msg=name)


def assert_weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_config_and_seeds_give_identical_runs():
    cfg = tiny_config(task="add", p=10, frac_train=0.72, epochs=40)
    first, second = Trainer(cfg), Trainer(cfg)
    m1, m2 = first.run(), second.run()
    assert len(m1) == 40 and list(m1.epoch) == list(range(1, 41))
    assert_metrics_equal(m1, m2)
    assert_weights_equal(first.weights(), second.weights())
    # and it trained: the loss went down, and another seed gives another run
    assert m1.train_loss[-1] < m1.train_loss[0]
    other = Trainer(cfg.replace(seed=1)).run()
    assert not np.array_equal(other.train_loss, m1.train_loss)


def test_events_and_metrics_shape():
    cfg = tiny_config(epochs=25, checkpoint_every=10, eval_every=5)
    events: list = []
    metrics = Trainer(cfg).run(callback=events.append)
    checkpoints = [e.epoch for e in events if isinstance(e, Checkpoint)]
    assert checkpoints == [0, 10, 20, 25]  # init, every 10, the end
    chunks = [e.metrics for e in events if isinstance(e, Progress)]
    assert sum(len(c) for c in chunks) == 25
    assert list(np.concatenate([c.epoch for c in chunks])) == list(range(1, 26))
    evaluated = ~np.isnan(metrics.test_loss)
    assert list(metrics.epoch[evaluated]) == [5, 10, 15, 20, 25]  # eval_every, and the last epoch
    assert not np.isnan(metrics.train_loss).any()
    last = events[-1]
    assert isinstance(last, Checkpoint) and last.epoch == 25 and len(last.metrics) == 25


def test_stop_flag_stops_with_a_checkpoint():
    cfg = tiny_config(epochs=50, checkpoint_every=20)
    trainer = Trainer(cfg)
    events: list = []
    trainer.run(callback=events.append, stop=lambda: trainer.epoch >= 13)
    assert trainer.epoch == 13
    assert [e.epoch for e in events if isinstance(e, Checkpoint)] == [0, 13]


@pytest.mark.parametrize("act_fn", ["relu", "gelu"])  # the numpy path, autograd
def test_checkpoint_events_are_snapshots(act_fn):
    """What a checkpoint hands the (background) writer does not change as training goes on:
    weights, step, moments, Grokfast EMA and metrics are copies taken at its epoch."""
    cfg = tiny_config(epochs=30, checkpoint_every=10, grokfast=True, act_fn=act_fn)
    events, copies = [], []

    def keep(event):
        if isinstance(event, Checkpoint):
            events.append(event)
            copies.append(copy.deepcopy(event))

    Trainer(cfg).run(callback=keep)
    assert {0, 10, 20, 30} <= {e.epoch for e in events}  # and any dense checkpoints
    for event, then in zip(events, copies):
        assert float(event.resume["step"]) == event.epoch
        assert_weights_equal(event.weights, then.weights)
        assert_weights_equal(event.resume, then.resume)
        assert_metrics_equal(event.metrics, then.metrics)
    assert any(k.startswith("grokfast_ema/") for k in events[-1].resume)


@pytest.mark.parametrize("grokfast,eval_every,act_fn", [
    (False, 1, "relu"), (True, 1, "relu"), (False, 3, "relu"),  # the numpy path
    (True, 3, "gelu"),                                          # autograd
])
def test_resume_from_checkpoint_equals_straight_run(runs_dir, grokfast, eval_every, act_fn):
    """Stop at epoch 17 (not a multiple of checkpoint_every), reopen from disk, continue to
    40: weights and every metric equal those of 40 epochs in one go."""
    cfg = tiny_config(epochs=40, checkpoint_every=10, grokfast=grokfast, grokfast_lamb=2.0,
                      eval_every=eval_every, act_fn=act_fn)
    assert Trainer(cfg).manual == (act_fn == "relu")
    straight = Trainer(cfg)
    straight_metrics = straight.run()

    store = RunStore(runs_dir)
    run = store.create(cfg, run_id="resumed")
    first = run.trainer()
    first.run(callback=run, stop=lambda: first.epoch >= 17)
    assert store.open("resumed").checkpoint_epochs() == [0, 10, 17]

    reopened = store.open("resumed")
    second = reopened.trainer()
    assert second.epoch == 17 and len(second.metrics) == 17
    second.run(callback=reopened)
    assert second.epoch == 40
    assert_weights_equal(second.weights(), straight.weights())
    assert_metrics_equal(second.metrics, straight_metrics)
    # what is on disk is the same again
    final = store.open("resumed")
    assert final.checkpoint_epochs() == [0, 10, 17, 20, 30, 40]
    assert_metrics_equal(final.metrics(), straight_metrics)
    assert_weights_equal(final.load_checkpoint(40), straight.weights())


def test_resume_without_optimizer_state_would_differ(runs_dir):
    """Guards the test above: a resume that lost AdamW's moments does not match."""
    cfg = tiny_config(epochs=30, checkpoint_every=10)
    straight = Trainer(cfg)
    straight.run()
    half = Trainer(cfg)
    half.run(until_epoch=15)
    fresh_optimizer = Trainer(cfg, weights=half.weights(), metrics=half.metrics, epoch=15)
    fresh_optimizer.run()
    w1, w2 = fresh_optimizer.weights(), straight.weights()
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


def test_hand_written_backward_trains_like_autograd(monkeypatch):
    """The notebook's model at small p takes one_layer's backward; the autograd path on the
    same config follows the same curve (to float32 rounding over 60 epochs)."""
    import grok_engine.train as train_module

    cfg = tiny_config(task="add", p=10, frac_train=0.72, epochs=60)
    manual = Trainer(cfg)
    assert manual.manual
    monkeypatch.setattr(train_module, "MANUAL_MAX_P", 0)
    auto = Trainer(cfg)
    assert not auto.manual
    m1, m2 = manual.run(), auto.run()
    np.testing.assert_allclose(m1.train_loss, m2.train_loss, rtol=1e-4)
    np.testing.assert_allclose(m1.test_loss, m2.test_loss, rtol=1e-4)
    for name, value in manual.weights().items():
        torch.testing.assert_close(value, auto.weights()[name], rtol=1e-3, atol=1e-4)


# -- dense checkpoints where the test metrics move ---------------------------------------
def moving_config(**overrides) -> RunConfig:
    """lr 1e-2: the tiny model's test metrics move fast in epochs 10-40, then settle."""
    return tiny_config(**{"epochs": 150, "checkpoint_every": 50, "lr": 1e-2, **overrides})


def expected_checkpoints(metrics: Metrics, every: int, step: int, last: int, n_test: int) -> list[int]:
    """The rule, recomputed from the metrics alone: 0, the multiples of ``every``, and each
    grid epoch g (multiple of ``step``) whose test accuracy moved > 2 points (and > one of
    the ``n_test`` rows) or test loss > 0.1 decade since g - step; and the last epoch."""
    loss = dict(zip(metrics.epoch.tolist(), metrics.test_loss.tolist()))
    acc = dict(zip(metrics.epoch.tolist(), metrics.test_acc.tolist()))
    out = {0, last, *range(every, last + 1, every)}
    for g in range(step, last + 1, step):
        if g - step in loss and (abs(acc[g] - acc[g - step]) > max(0.02, 1.5 / n_test)
                                 or abs(np.log10(loss[g] / loss[g - step])) > 0.1):
            out.add(g)
    return sorted(out)


@pytest.mark.parametrize("act_fn,eval_every", [("relu", 1), ("gelu", 1), ("relu", 2)])
def test_dense_checkpoints_where_the_test_metrics_move(act_fn, eval_every):
    """checkpoint_every 50: a grid of 5 epochs (6 with eval_every 2); the numpy path (relu)
    and autograd (gelu) alike."""
    from grok_engine.train import dense_checkpoint_step

    cfg = moving_config(act_fn=act_fn, eval_every=eval_every)
    assert Trainer(cfg).manual == (act_fn == "relu")
    events: list = []
    metrics = Trainer(cfg).run(callback=events.append)
    got = [e.epoch for e in events if isinstance(e, Checkpoint)]
    step = dense_checkpoint_step(50, eval_every)
    assert step == (5 if eval_every == 1 else 6)
    n_test = cfg.task.n_rows - cfg.task.n_train
    assert got == expected_checkpoints(metrics, 50, step, 150, n_test)
    dense = [e for e in got if e % 50]
    assert len(dense) >= 5 and all(e % step == 0 for e in dense)  # the transition is dense
    for event in events:  # each dense checkpoint carries the metrics up to its epoch
        if isinstance(event, Checkpoint):
            assert len(event.metrics) == event.epoch


def test_no_dense_checkpoints_when_the_regular_ones_are_dense_enough():
    events: list = []
    Trainer(moving_config(checkpoint_every=5)).run(callback=events.append)
    assert [e.epoch for e in events if isinstance(e, Checkpoint)] == list(range(0, 151, 5))


@pytest.mark.parametrize("stop_at", [23, 35])
def test_resumed_run_makes_the_same_dense_checkpoints(runs_dir, stop_at):
    """Stopped mid-transition (23: off the grid; 35: on it) and resumed from disk, a run
    has the straight run's checkpoints (plus the stop's) with the same weights."""
    cfg = moving_config()
    store = RunStore(runs_dir)
    straight = store.create(cfg, run_id="straight")
    straight.trainer().run(callback=straight)
    resumed = store.create(cfg, run_id="resumed")
    first = resumed.trainer()
    first.run(callback=resumed, stop=lambda: first.epoch >= stop_at)
    reopened = store.open("resumed")
    reopened.trainer().run(callback=reopened)

    want = straight.checkpoint_epochs()
    assert len([e for e in want if e % 50]) >= 5
    assert reopened.checkpoint_epochs() == sorted(set(want) | {stop_at})
    for epoch in want:
        assert_weights_equal(reopened.load_checkpoint(epoch), straight.load_checkpoint(epoch))
    assert_metrics_equal(reopened.metrics(), straight.metrics())
