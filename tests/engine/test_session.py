"""RunSession without any UI: open, select, request (and cancel), prefetch and the byte
bound of its caches, train, stop, extend, export — on the committed tiny run (add p=7,
d_model 32, checkpoints 0, 50, 100, 110, 120, 150, 200) and tiny mod_add runs it trains."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.session import (CheckpointsChanged, Error, ExtraReady, ResultReady, RunOpened, RunSession, TrainingEnded,
                                 TrainingProgress, TrainingStarted, extend_plan)
from grok_engine.store import RunStore

TINY_RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "tiny"
WAIT_S = 120


class Recorder:
    """A listener that keeps every event and can wait for one of a type."""

    def __init__(self) -> None:
        self.events: list = []
        self._cv = threading.Condition()

    def __call__(self, event) -> None:
        with self._cv:
            self.events.append(event)
            self._cv.notify_all()

    def of(self, kind) -> list:
        with self._cv:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind, where=lambda event: True, timeout: float = WAIT_S):
        """Until an event of ``kind`` for which ``where(event)`` holds has come."""
        with self._cv:
            assert self._cv.wait_for(lambda: any(isinstance(e, kind) and where(e) for e in self.events),
                                     timeout), kind


@pytest.fixture
def tiny(tmp_path):
    """(store, run) of a private copy of the committed tiny run."""
    shutil.copytree(TINY_RUN, tmp_path / "tiny")
    store = RunStore(tmp_path)
    return store, store.open("tiny")


def untrained(tmp_path, run_id: str = "fresh", **overrides):
    fields = {**dict(task="mod_add", p=7, frac_train=0.5, n_heads=2, d_model=32, d_head=16, d_mlp=64,
                     epochs=30, checkpoint_every=10, device="cpu"), **overrides}
    store = RunStore(tmp_path)
    return store, store.create(RunConfig().replace(**fields), run_id=run_id)


OPEN: list[RunSession] = []


@pytest.fixture(autouse=True)
def close_sessions():
    """Every session a test opened is closed, and its engine idle, when the test ends."""
    yield
    while OPEN:
        session = OPEN.pop()
        session.close()
        session.wait_training(WAIT_S)
        session.wait_idle(WAIT_S)


def opened(store, run, **kwargs) -> tuple[RunSession, Recorder]:
    events = Recorder()
    session = RunSession(store, run, events, **kwargs)
    OPEN.append(session)
    session.open()
    return session, events


def served(session: RunSession, study: str, epoch: int, **kwargs):
    """Select ``epoch``, request ``study`` there and wait for it."""
    session.select(epoch)
    request = session.request(study, epoch=epoch, **kwargs)
    assert request.wait(WAIT_S)
    return request


def test_open_reads_the_checkpoints_and_the_metrics(tiny):
    store, run = tiny
    session, events = opened(store, run)
    (event,) = events.of(RunOpened)
    assert event.epochs == tuple(run.checkpoint_epochs()) == session.epochs
    assert event.epochs[0] == 0 and event.epochs[-1] == 200 and event.notice is None
    assert int(event.metrics.epoch[-1]) == 200
    assert session.select(73) == 50 and session.selected == 50  # the nearest checkpoint
    session.close()


def test_a_request_delivers_its_result_and_extras_off_the_callers_thread(tiny):
    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    threads = []
    session.listener = lambda e: (threads.append(threading.current_thread()), events(e))
    request = served(session, "neurons", 150, extras=("probe",))
    (ready,) = events.of(ResultReady)
    assert ready.request_id == request.id and ready.epoch == 150 and ready.study == "neurons"
    assert ready.result is request.result and ready.result.epoch == 150
    assert ready.extras == {} and ready.pending == ("probe",)  # the study first, then its extra
    (extra,) = events.of(ExtraReady)
    assert (extra.request_id, extra.name, extra.epoch, extra.error) == (request.id, "probe", 150, "")
    assert extra.result.study == "probe" and extra.result.epoch == 150
    assert events.events.index(ready) < events.events.index(extra)
    assert threads and all(t is not threading.main_thread() for t in threads)
    bad = served(session, "nope", 150)
    (error,) = events.of(Error)
    assert error.where == "study" and error.request_id == bad.id and "'nope' does not exist" in error.message
    session.close()


@pytest.mark.skipif(not hasattr(os, "getpriority") or not sys.platform.startswith("linux"),
                    reason="per-thread nice is Linux's")
def test_studies_run_on_a_thread_nicer_than_the_callers(tiny):
    """The engine thread yields the CPU to the UI thread (ENGINE_NICE); the caller's
    thread keeps its priority."""
    from grok_engine.session.run_session import ENGINE_NICE

    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = []
    session.listener = lambda e: (seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
                                  events(e))
    served(session, "embedding", 150)
    assert seen and set(seen) == {min(19, mine + ENGINE_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    session.close()


def test_a_request_cancelled_once_its_study_is_shown_computes_no_extra(tiny):
    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    holder = {}

    def cancel_on_ready(event):
        events(event)
        if isinstance(event, ResultReady):
            holder["request"].cancel()  # the user stepped on as the study appeared

    session.listener = cancel_on_ready
    with session._engine_lock:  # so that the request exists before the engine serves it
        holder["request"] = session.request("neurons", epoch=150, extras=("probe",))
    assert holder["request"].wait(WAIT_S) and session.wait_idle(WAIT_S)
    assert len(events.of(ResultReady)) == 1 and events.of(ExtraReady) == []
    assert session.computed["studies"] == 1  # the probe was never run


def test_superseded_and_cancelled_requests_never_deliver(tiny):
    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    with session._engine_lock:  # the engine is busy: the requests queue up behind it
        first = session.request("embedding", epoch=0)
        second = session.request("embedding", epoch=50)
        assert first.cancelled and not second.cancelled  # superseded
        second.cancel()
        third = session.request("embedding", epoch=100)
        assert not third.cancelled
    assert third.wait(WAIT_S) and session.wait_idle(WAIT_S)
    assert first.done and second.done
    assert [e.request_id for e in events.of(ResultReady)] == [third.id]
    assert session.computed["studies"] == 1  # the cancelled ones were never run
    with session._engine_lock:
        pending = session.request("embedding", epoch=110)
        session.close()  # closing cancels what is outstanding
    assert pending.wait(WAIT_S) and pending.cancelled
    assert [e.request_id for e in events.of(ResultReady)] == [third.id]


def test_a_revisited_checkpoint_is_served_from_the_cache(tiny):
    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    served(session, "neurons", 150, extras=("probe",))
    served(session, "neurons", 120, extras=("probe",))
    assert session.computed == {"contexts": 2, "studies": 4}  # each checkpoint: neurons and probe
    again = served(session, "neurons", 150, extras=("probe",))
    assert session.computed == {"contexts": 2, "studies": 4}  # nothing recomputed
    first, _, revisit = events.of(ResultReady)
    assert revisit.request_id == again.id and revisit.result is first.result
    served(session, "embedding", 150)  # another study of a cached checkpoint: its context is kept
    assert session.computed == {"contexts": 2, "studies": 5}
    session.close()


def test_a_revisit_is_delivered_at_once_while_the_engine_is_busy(tiny):
    """A cached result does not queue behind the engine thread's current job (at p=113 a
    neighbour's prefetch holds the engine for ~0.3-1 s)."""
    store, run = tiny
    session, events = opened(store, run, prefetch=False)
    first = served(session, "neurons", 150, extras=("probe",))
    served(session, "neurons", 120, extras=("probe",))
    with session._engine_lock:  # the engine is busy computing something else
        again = session.request("neurons", epoch=150, extras=("probe",))
        assert again.wait(5) and again.result is first.result
        missing = session.request("neurons", epoch=100, extras=("probe",))  # not cached: waits
        assert not missing.wait(0.2)
    assert missing.wait(WAIT_S)
    revisit = next(e for e in events.of(ResultReady) if e.request_id == again.id)
    assert revisit.result is first.result and set(revisit.extras) == {"probe"}
    assert session.computed["studies"] == 6
    session.close()


def test_prefetch_computes_the_neighbours_so_a_step_is_a_cache_hit(tiny):
    store, run = tiny
    session, _ = opened(store, run)
    served(session, "neurons", 110, extras=("probe",))  # neighbours: 100 and 120
    assert session.wait_idle(WAIT_S)
    assert sorted(session.cached_epochs()) == [100, 110, 120]
    assert session.computed == {"contexts": 3, "studies": 6}
    served(session, "neurons", 120, extras=("probe",))  # the step: served at once
    assert session.computed["studies"] == 6
    assert session.wait_idle(WAIT_S)
    assert 150 in session.cached_epochs()  # and the next neighbour is on its way
    session.close()


def test_the_caches_stay_within_their_byte_bound(tiny):
    store, run = tiny
    probe, _ = opened(store, run, prefetch=False)
    served(probe, "neurons", 200, extras=("probe",))
    one = probe.cache_bytes()["contexts"]
    probe.close()
    assert one > 0
    bound = int(2.5 * one)
    session, _ = opened(store, run, context_bytes=bound, result_bytes=2**20)
    for epoch in session.epochs:
        served(session, "neurons", epoch, extras=("probe",))
        assert session.wait_idle(WAIT_S)
        held = session.cache_bytes()
        assert held["contexts"] <= bound and held["results"] <= 2**20, (epoch, held)
        assert epoch in session.cached_epochs()  # the prefetch never pushes out the selected one
    before = session.computed["contexts"]
    served(session, "embedding", 0)  # its context was evicted long ago: built again
    assert session.computed["contexts"] == before + 1
    session.close()


def test_export_writes_every_study_and_one_item(tiny, tmp_path):
    store, run = tiny
    session, _ = opened(store, run)
    folder = tmp_path / "out"
    paths = session.export_checkpoint(150, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    assert any(p.name.startswith("neurons_") for p in paths)
    # per-checkpoint studies are named by the checkpoint; progress (per run) by the last one
    assert all(p.name.endswith("_epoch150.csv") or p.name.startswith("progress_") for p in paths)
    result = served(session, "embedding", 150).result
    (path,) = [session.export_item(result.tables["pca"], tmp_path / "pca.csv")]
    assert path.read_text().splitlines()[0].startswith("component")
    with pytest.raises(GrokError, match="does not exist"):
        session.export_checkpoint(151, tmp_path / "none")
    session.close()


def test_train_then_resume_is_refused_then_extend_trains_more(tmp_path):
    store, run = untrained(tmp_path)
    session, events = opened(store, run)
    assert session.epochs == ()
    session.start_training()
    with pytest.raises(GrokError, match="already training"):
        session.start_training()
    assert session.wait_training(WAIT_S)
    (ended,) = events.of(TrainingEnded)
    assert ended == TrainingEnded(30, False, None)
    assert events.of(TrainingStarted)[0].target_epoch == 30
    announced = sorted({e for c in events.of(CheckpointsChanged) for e in c.added})
    assert announced == list(session.epochs) == run.checkpoint_epochs()  # every one, before the end
    assert {0, 10, 20, 30} <= set(announced)
    assert events.events.index(ended) > max(events.events.index(c) for c in events.of(CheckpointsChanged))
    progress = [n for p in events.of(TrainingProgress) for n in p.chunk.epoch.tolist()]
    assert progress == list(range(1, 31))
    with pytest.raises(GrokError, match=r"run is complete \(30 epochs\)"):
        session.resume()
    assert session.extend(10) == 40
    assert session.wait_training(WAIT_S)
    assert events.of(TrainingEnded)[-1] == TrainingEnded(40, False, None)
    assert session.epochs[-1] == 40 and session.run.config.train.epochs == 40
    assert store.open("fresh").config.train.epochs == 40  # the plan is in the run's config
    session.close()


def test_stop_writes_a_checkpoint_and_resume_goes_on_from_it(tmp_path):
    store, run = untrained(tmp_path, epochs=200000, checkpoint_every=1000)
    session, events = opened(store, run)
    with pytest.raises(GrokError, match="not training"):
        session.stop_training()
    session.start_training()
    events.wait_for(TrainingProgress)
    session.stop_training()
    assert session.wait_training(WAIT_S)
    ended = events.of(TrainingEnded)[-1]
    assert ended.stopped and ended.error is None and 0 < ended.epoch < 200000
    assert session.epochs[-1] == ended.epoch == run.checkpoint_epochs()[-1]  # stopped on a checkpoint
    session.resume()  # goes on from the checkpoint it stopped at
    events.wait_for(TrainingProgress, lambda p: p.start_epoch == ended.epoch and p.epoch > ended.epoch)
    session.stop_training()
    assert session.wait_training(WAIT_S)
    assert events.of(TrainingEnded)[-1].stopped


def test_extend_plan_refuses_fewer_epochs_than_done(tmp_path):
    store, run = untrained(tmp_path, epochs=20)
    run.trainer().run(callback=run)
    with pytest.raises(GrokError, match="epochs=10 is below the 20 epochs run fresh has done"):
        extend_plan(store, run, 10)
    assert extend_plan(store, run, 20) is run
    assert extend_plan(store, run, 25).config.train.epochs == 25


def test_training_that_cannot_start_ends_with_an_error(tmp_path):
    store, run = untrained(tmp_path)
    session, events = opened(store, run)
    with run.lock():  # another trainer holds the run
        session.start_training()
        assert session.wait_training(WAIT_S)
    (ended,) = events.of(TrainingEnded)
    assert ended.error and "fresh" in ended.error and not session.training
    session.close()


def test_poll_brings_the_checkpoints_and_curves_of_a_run_trained_elsewhere(tmp_path):
    """A run another process trains (here: its trainer and writer, as `grok-tui train`
    runs them): poll() finds its new checkpoints and the metrics up to the newest, so the
    app's curves follow the checkpoints instead of staying at the ones it opened with."""
    from grok_engine.store import AsyncWriter

    store, run = untrained(tmp_path)
    session, events = opened(store, run)
    (first,) = events.of(RunOpened)
    assert len(first.metrics.epoch) == 0
    assert session.poll() is None  # nothing new yet
    with AsyncWriter(run) as writer:
        run.trainer().run(callback=writer, until_epoch=20)
    event = session.poll()
    assert isinstance(event, CheckpointsChanged) and event.epochs[-1] == 20
    assert int(event.metrics.epoch[-1]) == 20 and len(event.metrics.epoch) == 20
    assert session.poll() is None
