"""Stacked training (grok_engine.sweep): a member trained in a pack is the run trained alone
(metrics, checkpoint epochs, weights), stops on its own, and a killed pack resumes each
member from its own last checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.store import RunStore
from grok_engine.sweep.pack import train_pack
from grok_engine.sweep.stacked import StackedTrainer, stackable
from grok_engine.train import Checkpoint, Diverged, Progress, Trainer

ROOT = Path(__file__).resolve().parents[2]

# p=17: the solo trainer's numpy path (one_layer); lr 1e-2 moves the test metrics quickly
# enough in the first 100 epochs for dense checkpoints between the regular ones.
BASE = dict(task="mod_add", p=17, frac_train=0.5, n_heads=2, d_model=32, d_head=16, d_mlp=64,
            epochs=120, checkpoint_every=40, lr=1e-2, weight_decay=1.0, device="cpu")
# Four members differing in weight decay, lr, init seed, split (size and seed), Grokfast
# and eval_every.
MEMBERS = [dict(), dict(weight_decay=0.1, lr=3e-3), dict(seed=5, eval_every=3),
           dict(frac_train=0.6, data_seed=3, grokfast=True, grokfast_alpha=0.9, grokfast_lamb=1.5)]


def config(**overrides) -> RunConfig:
    return RunConfig().replace(**{**BASE, **overrides})


def recorder():
    events: list = []
    return events, events.append


def checkpoints(events) -> list[Checkpoint]:
    return [e for e in events if isinstance(e, Checkpoint)]


def assert_close_metrics(a, b) -> None:
    for name, values in a.as_dict().items():
        np.testing.assert_allclose(b.as_dict()[name], values, rtol=1e-5, atol=0, err_msg=name)


def assert_same_run(solo_events, pack_events) -> None:
    """Same checkpoint epochs, weights and resume state at each to 1e-5, same metrics."""
    solo, pack = checkpoints(solo_events), checkpoints(pack_events)
    assert [c.epoch for c in pack] == [c.epoch for c in solo]
    for a, b in zip(solo, pack):
        for part in ("weights", "resume"):
            x, y = getattr(a, part), getattr(b, part)
            assert sorted(x) == sorted(y)
            for name in x:
                torch.testing.assert_close(y[name], x[name], rtol=1e-5, atol=1e-7, msg=f"{a.epoch} {name}")
        assert_close_metrics(a.metrics, b.metrics)
    solo_rows = sum(len(e.metrics) for e in solo_events if isinstance(e, Progress))
    assert sum(len(e.metrics) for e in pack_events if isinstance(e, Progress)) == solo_rows


def test_pack_trains_each_member_as_the_solo_trainer():
    configs = [config(**m) for m in MEMBERS]
    solo_events, solo_metrics = [], []
    for c in configs:
        events, cb = recorder()
        trainer = Trainer(c)
        assert trainer.manual  # the solo numpy path is the reference
        solo_metrics.append(trainer.run(callback=cb))
        solo_events.append(events)
    pack_events = [recorder() for _ in configs]
    pack = StackedTrainer([Trainer(c) for c in configs], [cb for _, cb in pack_events])
    assert pack.run() == ["done"] * 4
    for i, member in enumerate(pack.members):
        assert_close_metrics(solo_metrics[i], member.trainer.metrics)
        assert len(member.trainer.metrics) == BASE["epochs"]
        assert_same_run(solo_events[i], pack_events[i][0])
    # the members are four different runs, and the dense checkpoints are there
    finals = [m.trainer.metrics.train_loss[-1] for m in pack.members]
    assert len(set(finals)) == 4
    epochs = [c.epoch for c in checkpoints(pack_events[0][0])]
    assert set(epochs) > {0, 40, 80, 120}


def test_members_stop_on_their_own_and_the_rest_go_on():
    """Different epochs, a stop-at-test-acc, a diverging lr: each leaves the pack where its
    solo run ends, and the members left are unchanged by it."""
    configs = [config(epochs=30), config(epochs=100, seed=2, grokfast=True), config(seed=3),
               config(lr=10.0, frac_train=0.3, checkpoint_every=2)]
    stop_acc = [None, None, 0.1, None]
    pack_events = [recorder() for _ in configs]
    pack = StackedTrainer([Trainer(c) for c in configs], [cb for _, cb in pack_events],
                          stop_at_test_acc=stop_acc)
    assert pack.run() == ["done", "done", "done", "diverged"]

    for i in (0, 1):  # plain ends at their own epochs
        events, cb = recorder()
        Trainer(configs[i]).run(callback=cb)
        assert_same_run(events, pack_events[i][0])
        assert checkpoints(pack_events[i][0])[-1].epoch == configs[i].train.epochs

    # stop-at-test-acc: the first epoch whose test accuracy reaches 0.1, checkpointed
    reached = pack.members[2].trainer.metrics
    stop_epoch = int(reached.epoch[-1])
    assert reached.test_acc[-1] >= 0.1 and (reached.test_acc[:-1] < 0.1).all()
    assert 1 < stop_epoch < configs[2].train.epochs
    events, cb = recorder()
    Trainer(configs[2]).run(callback=cb, until_epoch=stop_epoch)
    assert_same_run(events, pack_events[2][0])

    # divergence: the solo run's Diverged event, no checkpoint of the blown-up weights
    events, cb = recorder()
    solo = Trainer(configs[3])
    solo.run(callback=cb)
    assert solo.diverged is not None
    mine = [e for e in pack_events[3][0] if isinstance(e, Diverged)]
    assert len(mine) == 1 and pack_events[3][0][-1] is mine[0]
    assert (mine[0].epoch, mine[0].reason) == (solo.diverged.epoch, solo.diverged.reason)
    assert_close_metrics(solo.diverged.metrics, mine[0].metrics)
    assert_same_run(events, pack_events[3][0])


@pytest.mark.parametrize("model", [dict(act_fn="gelu"), dict(normalization="LN")])
def test_the_torch_stack_follows_the_solo_autograd_path(model):
    """Models off the numpy path stack through vmap (what a GPU runs), here on the CPU:
    the solo autograd run to float32 rounding over 40 epochs (not bit for bit: the module
    docstring says why the CPU pack does not use it)."""
    configs = [config(**m, **model, epochs=40, checkpoint_every=20) for m in MEMBERS]
    trainers = [Trainer(c) for c in configs]
    assert not any(t.manual for t in trainers) and not stackable(trainers)
    pack_events = [recorder() for _ in configs]
    pack = StackedTrainer(trainers, [cb for _, cb in pack_events])
    assert pack.run() == ["done"] * 4
    for c, (mine, _) in zip(configs, pack_events):
        events, cb = recorder()
        Trainer(c).run(callback=cb)
        solo, ours = checkpoints(events), checkpoints(mine)
        assert [e.epoch for e in ours] == [e.epoch for e in solo]
        for name, values in solo[-1].metrics.as_dict().items():
            np.testing.assert_allclose(ours[-1].metrics.as_dict()[name], values, rtol=1e-4, err_msg=name)
        for name, w in solo[-1].weights.items():
            torch.testing.assert_close(ours[-1].weights[name], w, rtol=1e-3, atol=1e-4 * w.abs().max().item())


def test_pack_size_rule():
    from grok_engine.sweep.pack import CPU_PACK, pack_size

    assert pack_size("cpu", config(p=23)) == CPU_PACK      # the numpy path stacks
    assert pack_size("cpu", config(p=37)) == 1             # the CPU does not stack autograd
    assert pack_size("cpu", config(act_fn="gelu")) == 1


def test_a_pack_off_the_numpy_path_trains_its_members_as_solo_runs_on_the_cpu(runs_dir):
    store = RunStore(runs_dir)
    for rid, seed in (("solo", 1), ("a", 1), ("b", 2)):
        store.create(config(act_fn="gelu", epochs=20, checkpoint_every=10, seed=seed), run_id=rid)
    run = store.open("solo")
    run.trainer().run(callback=run)
    assert train_pack(runs_dir, ["a", "b"], device="cpu") == {"a": "done", "b": "done"}
    for name, values in run.metrics().as_dict().items():  # "a" has the seed of "solo"
        np.testing.assert_array_equal(store.open("a").metrics().as_dict()[name], values)


def test_pack_refuses_members_of_other_shapes(runs_dir):
    store = RunStore(runs_dir)
    store.create(config(), run_id="a")
    store.create(config(d_mlp=32), run_id="b")
    with pytest.raises(GrokError, match="differ in shape"):
        train_pack(runs_dir, ["a", "b"], device="cpu")
    assert not stackable([Trainer(config()), Trainer(config(p=13))])
    assert list((runs_dir / "a").glob("checkpoints/*")) == []  # nothing trained


def test_train_pack_writes_each_member_as_grok_tui_train_does(runs_dir):
    """The store sees a packed member exactly as a solo-trained run: same files, metrics,
    checkpoints; progress is reported per member; a finished member is left alone."""
    store = RunStore(runs_dir)
    ids = []
    for i, m in enumerate(MEMBERS[:3]):
        store.create(config(**m, epochs=60), run_id=f"solo-{i}")
        store.create(config(**m, epochs=60), run_id=f"pack-{i}")
        ids.append(f"pack-{i}")
        run = store.open(f"solo-{i}")
        with run.lock():
            run.trainer().run(callback=run)
    seen: dict[str, int] = {}
    states = train_pack(runs_dir, ids, device="cpu",
                        on_progress=lambda rid, epoch, target: seen.__setitem__(rid, epoch))
    assert states == {rid: "done" for rid in ids}
    assert seen == {rid: 60 for rid in ids}
    for i, rid in enumerate(ids):
        solo, pack = store.open(f"solo-{i}"), store.open(rid)
        assert_close_metrics(solo.metrics(), pack.metrics())
        assert pack.checkpoint_epochs() == solo.checkpoint_epochs()
        assert pack.resume_epochs() == solo.resume_epochs() == [60]
        for epoch in solo.checkpoint_epochs():
            a, b = solo.load_checkpoint(epoch), pack.load_checkpoint(epoch)
            for name in a:
                torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-7)
        assert not _locked(pack)  # released
    before = _files(runs_dir / "pack-0")
    assert train_pack(runs_dir, ids, device="cpu") == {rid: "done" for rid in ids}
    assert _files(runs_dir / "pack-0") == before  # done: not trained again


def test_a_stopped_pack_checkpoints_every_member_and_goes_on_later(runs_dir):
    store = RunStore(runs_dir)
    ids = ["s-0", "s-1"]
    for rid, m in zip(ids, MEMBERS[2:]):
        store.create(config(**m, epochs=60), run_id=rid)
    calls = []
    states = train_pack(runs_dir, ids, device="cpu", stop=lambda: calls.append(1) or len(calls) > 25)
    assert states == {rid: "stopped" for rid in ids}
    assert [store.open(rid).epochs_done() for rid in ids] == [25, 25]  # checkpointed where they stood
    assert train_pack(runs_dir, ids, device="cpu") == {rid: "done" for rid in ids}
    for rid, m in zip(ids, MEMBERS[2:]):
        solo = Trainer(config(**m, epochs=60)).run()
        assert_close_metrics(solo, store.open(rid).metrics())


def test_a_diverging_member_is_marked_on_disk_and_not_trained_again(runs_dir):
    store = RunStore(runs_dir)
    store.create(config(epochs=30), run_id="ok")
    store.create(config(lr=10.0, frac_train=0.3, checkpoint_every=2), run_id="nan")
    assert train_pack(runs_dir, ["ok", "nan"], device="cpu") == {"ok": "done", "nan": "diverged"}
    bad = store.open("nan")
    mark = bad.diverged()
    assert mark is not None and len(bad.metrics()) == mark["epoch"]
    assert bad.epochs_done() < mark["epoch"]  # checkpoints end at the last good one
    before = _files(bad.path)
    assert train_pack(runs_dir, ["ok", "nan"], device="cpu") == {"ok": "done", "nan": "diverged"}
    assert _files(bad.path) == before


def test_a_member_trained_elsewhere_stops_the_pack_before_it_trains(runs_dir):
    from grok_engine.run_lock import RunLocked

    store = RunStore(runs_dir)
    for rid in ("a", "b"):
        store.create(config(epochs=10), run_id=rid)
    import fcntl

    fd = os.open(runs_dir / "b" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another trainer holds it
    try:
        with pytest.raises(RunLocked, match="run b is being trained"):
            train_pack(runs_dir, ["a", "b"], device="cpu")
    finally:
        os.close(fd)
    assert store.open("a").checkpoint_epochs() == [] and not _locked(store.open("a"))
    assert train_pack(runs_dir, ["a", "b"], device="cpu") == {"a": "done", "b": "done"}


def _locked(run) -> bool:
    """Whether someone holds the run's flock (asked through a descriptor of our own: this
    process's RunLock is re-entrant, a second flock on a new descriptor is not)."""
    import fcntl

    fd = os.open(run.path / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# -- a killed pack ---------------------------------------------------------------------
# Member 0 finishes early (then must be left untouched); the others run long enough to be
# killed mid-way, each with a checkpoint every 5 epochs (the writer busy as it trains).
KILL_MEMBERS = [dict(epochs=20), dict(epochs=160, weight_decay=0.3),
                dict(epochs=120, seed=4, grokfast=True), dict(epochs=160, frac_train=0.6, data_seed=9)]
CHILD = ("import sys; from grok_engine.sweep.pack import train_pack; "
         "train_pack(sys.argv[1], sys.argv[2:], device='cpu')")


def _resume_epochs(run_dir: Path) -> list[int]:
    try:
        return sorted(int(e[6:12]) for e in os.listdir(run_dir / "resume") if e.startswith("epoch_"))
    except FileNotFoundError:
        return []


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run but its lock (which names the last process to take it): bytes
    and modification time."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_killed_pack_resumes_every_member_from_its_own_last_checkpoint(runs_dir):
    store = RunStore(runs_dir)
    killed = [f"killed-{i}" for i in range(len(KILL_MEMBERS))]
    straight = [f"straight-{i}" for i in range(len(KILL_MEMBERS))]
    for i, m in enumerate(KILL_MEMBERS):
        for rid in (killed[i], straight[i]):
            store.create(config(**m, checkpoint_every=5, lr=3e-3), run_id=rid)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(runs_dir), *killed], env=env,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # kill once member 0 is finished and every other member is past its first checkpoint
        while not (_resume_epochs(runs_dir / killed[0]) == [20]
                   and all(_resume_epochs(runs_dir / rid) and max(_resume_epochs(runs_dir / rid)) >= 30
                           for rid in killed[1:])):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoints within 120 s"
            time.sleep(0.01)
        time.sleep(random.Random(5).uniform(0.0, 0.1))  # anywhere, writes in flight
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = {rid: max(_resume_epochs(runs_dir / rid)) for rid in killed}
    assert all(last[rid] < store.open(rid).config.train.epochs for rid in killed[1:]), last
    finished = _files(runs_dir / killed[0])
    # (a checkpoint past the last resume state, written just before the kill, is redone;
    # a temp file the kill left half written is not a checkpoint)
    kept = {rid: {k: v for k, v in _files(runs_dir / rid).items()
                  if k.startswith("checkpoints/epoch_") and int(k[-18:-12]) <= last[rid]}
            for rid in killed[1:]}

    starts: dict[str, int] = {}
    assert train_pack(runs_dir, killed, device="cpu",
                      on_progress=lambda rid, epoch, target: starts.setdefault(rid, epoch)
                      ) == {rid: "done" for rid in killed}
    for rid in killed[1:]:  # each went on from its own last checkpoint, not from the start
        assert last[rid] < starts[rid] <= last[rid] + 5, (rid, last[rid], starts[rid])
        now = _files(runs_dir / rid)
        assert kept[rid]
        assert all(now[k] == v for k, v in kept[rid].items())  # its checkpoints so far untouched
    assert train_pack(runs_dir, straight, device="cpu") == {rid: "done" for rid in straight}
    assert _files(runs_dir / killed[0]) == finished  # the finished member untouched
    for a_id, b_id in zip(straight, killed):
        a, b = store.open(a_id), store.open(b_id)
        epochs = a.config.train.epochs
        mb = b.metrics()
        assert mb.epoch.tolist() == list(range(1, epochs + 1))  # no gaps, no duplicates
        for name, values in a.metrics().as_dict().items():
            np.testing.assert_allclose(mb.as_dict()[name], values, rtol=1e-5, atol=0, err_msg=name)
        assert b.checkpoint_epochs() == a.checkpoint_epochs()
        for epoch in (last[b_id], epochs):
            wa, wb = a.load_checkpoint(epoch), b.load_checkpoint(epoch)
            for name in wa:
                torch.testing.assert_close(wb[name], wa[name], rtol=1e-5, atol=1e-7)
        assert [p.name for p in b.path.rglob(".tmp-*")] == []
