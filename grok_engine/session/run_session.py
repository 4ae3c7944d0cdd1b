"""RunSession: one open run, its checkpoints, its studies, its training, its exports.

What every front end (the app's run screen, ``grok-tui train``/``export``, the multi-run
screens) needs from one run, without any UI in it. The front end passes a listener; the
session calls it with the typed events of :mod:`grok_engine.session.events`.

Threads and locks:

- the **engine thread** (one, started on first use) builds checkpoint contexts and runs
  studies, user requests first, prefetch after (a priority queue). It is the only thread
  that touches the context and result caches, under ``_engine_lock`` (export from the
  caller's thread takes it too), so torch work never runs twice at once. The result
  cache has its own ``_results_lock`` besides: :meth:`RunSession.request` serves a cached
  result (a revisit) on the caller's thread at once, instead of queueing it behind the
  engine thread's current job (a neighbour's prefetch takes ~0.3-1 s at p=113);
- the **training thread** (while training) spawns the training child and reads its
  JSON lines (:class:`~grok_engine.session.training.TrainingClient`);
- ``_state_lock`` guards what those threads and the caller share: the run (replaced when
  its planned epochs change), the checkpoint epochs, the selection, the training client.

Following new checkpoints: the training child reports each one it wrote; for a run that
another process trains, :meth:`RunSession.poll` re-reads the checkpoint folder. It is a
method the front end calls on its own timer rather than a thread of the session: the app
already has a timer loop, a listdir costs well under a millisecond, and a polling thread
would need its own start, stop and clean-up in every front end (the headless commands
need none).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from grok_engine.errors import GrokError
from grok_engine.runtime import release_freed_memory
from grok_engine.session.cache import ByteLRU
from grok_engine.session.events import (CheckpointsChanged, Error, Event, ExtraReady, ResultReady,
                                        RunOpened, TrainingEnded, TrainingProgress, TrainingStarted)
from grok_engine.session.training import TrainingClient, extend_plan
from grok_engine.studies.schema import SCHEMAS

# A p=113 context is ~65 MB at '=' (the probe's float64 activations are not kept in it):
# three of them (the selected checkpoint and its two neighbours) fit, the app stays < 1 GiB.
DEFAULT_CONTEXT_BYTES = 256 * 2**20
DEFAULT_RESULT_BYTES = 96 * 2**20

PRIORITY_REQUEST, PRIORITY_PREFETCH_RESULT, PRIORITY_PREFETCH_CONTEXT = 0, 1, 2

# Prefetch starts this long after the last result was delivered: the front end draws that
# result meanwhile, and a prefetch study's Python work would hold the GIL against it (the
# p=113 Neurons pane drew a revisit in ~70 ms alone, ~145 ms beside the next probe).
PREFETCH_GRACE_S = 0.15

# The engine thread (studies and prefetch) runs this much nicer than the app's UI thread,
# as the training child does: with a child on one core, a prefetch computing on the other
# took CPU from the UI thread drawing a revisit (Neurons at p=113: 126 ms, against ~60 ms
# with nothing beside it). The cost: on a box whose cores are all busy with other work at
# nice 0, the studies wait behind it.
ENGINE_NICE = 10


def describe(exc: BaseException) -> str:
    """One line for the user: GrokError as is, anything else with its type."""
    if isinstance(exc, GrokError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def options_key(options: dict[str, Any]) -> tuple:
    """A hashable, order-free key of study options."""
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


class Request:
    """A handle on one study request. ``cancel()`` makes sure it never delivers (a later
    request supersedes it the same way); ``wait()`` returns once it delivered, failed or
    was cancelled. ``result``/``error`` are set when it is done."""

    def __init__(self, request_id: int, study: str, epoch: int, options: dict[str, Any],
                 extras: tuple[str, ...], deliver_lock: "threading.RLock") -> None:
        self.id = request_id
        self.study = study
        self.epoch = epoch
        self.options = dict(options)
        self.extras = tuple(extras)
        self.result: Any = None
        self.error: str | None = None
        self._cancelled = False
        self._deliver_lock = deliver_lock
        self._done = threading.Event()

    def cancel(self) -> None:
        with self._deliver_lock:  # a delivery in progress finishes first, none starts after
            self._cancelled = True
        self._done.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def __repr__(self) -> str:
        return f"Request({self.id}, {self.study!r}, epoch={self.epoch}, {self.options})"


class RunSession:
    """One run of ``store``: open it, follow its checkpoints, compute studies, train, export.

    ``listener(event)`` receives every event, from the thread that produced it; it must not
    block (the app posts a message). ``context_bytes``/``result_bytes`` bound the caches;
    ``prefetch=False`` computes only what is requested (tests count computations).
    """

    def __init__(self, store: Any, run: Any, listener: Callable[[Event], None] | None = None, *,
                 context_bytes: int = DEFAULT_CONTEXT_BYTES, result_bytes: int = DEFAULT_RESULT_BYTES,
                 prefetch: bool = True, follow_interval_s: float = 0.5) -> None:
        self.store = store
        self.follow_interval_s = follow_interval_s
        self.listener = listener
        self.prefetch_enabled = prefetch
        self._state_lock = threading.RLock()
        self._run = run
        self._epochs: list[int] = []
        self._selected: int | None = None
        self._direction = -1  # the last step's direction: its side is prefetched first
        self._pending_added: set[int] = set()  # checkpoints not yet in a CheckpointsChanged
        self._follow_timer: threading.Timer | None = None
        self._last_follow = 0.0
        self._run_version = 0  # bumped when the run changes: run-scope results go stale
        self._client: TrainingClient | None = None
        self._stop_asked = False
        self._train_thread: threading.Thread | None = None
        self._train_state = {"epoch": 0, "start": 0}
        # the engine: one lock, one context cache, one result cache, one thread
        self._engine_lock = threading.Lock()
        self._contexts: ByteLRU = ByteLRU(context_bytes)
        self._results: ByteLRU = ByteLRU(result_bytes)
        self._results_lock = threading.Lock()  # inside _engine_lock where both are held
        self._threads_for: bool | None = None
        self.computed = {"contexts": 0, "studies": 0}  # what was computed, not served from cache
        self._deliver_lock = threading.RLock()  # a listener may cancel its request as it is told
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._queue_cv = threading.Condition()
        self._busy = False
        self._delivered_at = 0.0  # time.monotonic() of the last delivery (PREFETCH_GRACE_S)
        self._closed = False
        self._engine: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._requests: list[Request] = []  # outstanding user requests
        self._visible: tuple[str, dict[str, Any], tuple[str, ...]] | None = None
        self._prefetch_generation = 0

    # -- the run -------------------------------------------------------------------------
    @property
    def run(self) -> Any:
        with self._state_lock:
            return self._run

    @property
    def epochs(self) -> tuple[int, ...]:
        with self._state_lock:
            return tuple(self._epochs)

    @property
    def selected(self) -> int | None:
        with self._state_lock:
            return self._selected

    def open(self) -> RunOpened | None:
        """Read the run's checkpoints, metrics and divergence marker (the caller's thread:
        the app calls it from a worker). Emits and returns RunOpened, or emits an Error
        ("open") and returns None when the checkpoints cannot be listed."""
        run, notice = self.run, None
        try:
            epochs = run.checkpoint_epochs()
        except Exception as exc:  # noqa: BLE001 - reported, never a traceback
            self._emit(Error("open", describe(exc)))
            return None
        try:
            metrics = run.metrics().truncate(epochs[-1] if epochs else 0)
        except Exception as exc:  # noqa: BLE001 - bad metrics hide no checkpoint
            from grok_engine.train import Metrics

            metrics, notice = Metrics(), f"no training curves: {describe(exc)}"
        try:
            diverged = run.diverged()
        except Exception as exc:  # noqa: BLE001 - an unreadable marker hides nothing else
            diverged, notice = None, notice or describe(exc)
        if diverged is not None:
            notice = "; ".join(filter(None, [
                f"diverged at epoch {diverged['epoch']} ({diverged['reason']}): checkpoints end at "
                f"the last finite one", notice]))
        with self._state_lock:
            self._epochs = sorted(set(epochs) | set(self._epochs))
            opened = RunOpened(tuple(self._epochs), metrics, notice)
        self._emit(opened)
        return opened

    def poll(self) -> CheckpointsChanged | None:
        """Re-read the run's checkpoint folder; emit and return CheckpointsChanged when it
        holds new checkpoints (a run another process trains), with the run's metrics up to
        the newest one: that process writes them at each checkpoint, so the curves follow
        the checkpoints. See the module docstring."""
        try:
            found = self.run.checkpoint_epochs()
        except Exception:  # noqa: BLE001 - a folder being written; the next poll sees it
            return None
        if not set(found) - set(self.epochs):
            return None
        try:
            metrics = self.run.metrics().truncate(max(found))
        except Exception:  # noqa: BLE001 - being written: the curves come with the next one
            metrics = None
        return self._add_epochs(found, throttle=False, metrics=metrics)

    def trained_elsewhere(self) -> bool:
        """Whether another process is training this run now (it holds the run's lock)."""
        from grok_engine.run_lock import held_elsewhere

        return held_elsewhere(self.run.path)

    def _add_epochs(self, found: Iterable[int], throttle: bool,
                    metrics: Any = None) -> CheckpointsChanged | None:
        """Record new checkpoint epochs. While training they can come many times a second:
        CheckpointsChanged then goes out at most every ``follow_interval_s`` (the first at
        once, the rest together at the end of the interval), so a front end that follows
        the last checkpoint recomputes its pane a few times a second, not per checkpoint.
        Returns the CheckpointsChanged emitted at once, if one was (with ``metrics``)."""
        import time

        with self._state_lock:
            added = set(found) - set(self._epochs)
            if not added:
                return None
            self._epochs = sorted(set(self._epochs) | added)
            self._pending_added |= added
            self._run_version += 1
            wait = self._last_follow + self.follow_interval_s - time.monotonic() if throttle else 0.0
            if wait > 0:
                if self._follow_timer is None:
                    self._follow_timer = threading.Timer(wait, self._flush_checkpoints)
                    self._follow_timer.daemon = True
                    self._follow_timer.start()
                return None
        return self._flush_checkpoints(metrics)

    def _flush_checkpoints(self, metrics: Any = None) -> CheckpointsChanged | None:
        """Emit the checkpoints recorded since the last CheckpointsChanged, if any (with
        ``metrics``, see :meth:`poll`)."""
        import time

        with self._state_lock:  # emitted under it: the timer's and the reader's stay in order
            if self._follow_timer is not None:
                self._follow_timer.cancel()
                self._follow_timer = None
            if not self._pending_added:
                return None
            event = CheckpointsChanged(tuple(self._epochs), tuple(sorted(self._pending_added)), metrics)
            self._pending_added = set()
            self._last_follow = time.monotonic()
            self._emit(event)
        return event

    def nearest(self, epoch: int) -> int | None:
        """The checkpoint epoch nearest ``epoch`` (the earlier one on a tie); None when the
        run has none."""
        epochs = self.epochs
        if not epochs:
            return None
        return min(epochs, key=lambda e: (abs(e - epoch), e))

    # -- selection and studies -----------------------------------------------------------
    def select(self, epoch: int) -> int:
        """Select the checkpoint nearest ``epoch``; returns its epoch. The neighbouring
        checkpoints' contexts, and the last requested study's result at them, are then
        computed in the background, after every request (prefetch)."""
        chosen = self.nearest(epoch)
        if chosen is None:
            raise GrokError(f"run {self.run.id} has no checkpoints yet")
        with self._state_lock:
            if self._selected is not None and chosen != self._selected:
                self._direction = 1 if chosen > self._selected else -1
            self._selected = chosen
        self._schedule_prefetch()
        return chosen

    def request(self, study: str, options: dict[str, Any] | None = None, *, epoch: int | None = None,
                extras: Iterable[str] = ()) -> Request:
        """``study`` with ``options`` at ``epoch`` (default: the selected checkpoint), and
        the ``extras`` studies beside it with their default options, computed on the engine
        thread and delivered from there: ResultReady (or Error, "study") as soon as the study
        is done, with the extras already cached; then an ExtraReady for each of its
        ``pending`` extras. What the cache holds is delivered before this returns, on the
        caller's thread. Every earlier request still outstanding is superseded (cancelled)."""
        epoch = self.selected if epoch is None else epoch
        if epoch is None:
            raise GrokError(f"run {self.run.id} has no checkpoint selected")
        req = Request(next(self._ids), study, epoch, options or {}, tuple(extras), self._deliver_lock)
        with self._state_lock:
            for old in self._requests:
                old.cancel()
            self._requests = [req]
            self._visible = (study, dict(req.options), req.extras)
        hit = self._cached(study, epoch, req.options)
        if hit is not None:  # a revisit: shown now, not queued behind the engine's current job
            extras = self._cached_extras(req)
            self._ready(req, hit, extras)
            if len(extras) == len(req.extras):
                self._finished(req)
            else:
                self._submit(PRIORITY_REQUEST, lambda: self._serve_extras(req, extras))
        else:
            self._submit(PRIORITY_REQUEST, lambda: self._serve(req))
        self._schedule_prefetch()
        return req

    def _serve(self, req: Request) -> None:
        try:
            if not req.cancelled:
                result = self._compute(req.study, req.epoch, req.options, cancelled=lambda: req.cancelled)
                extras = self._cached_extras(req)
                self._ready(req, result, extras)
                self._serve_extras(req, extras, finish=False)
        except _Cancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - shown by the front end, never a traceback
            req.error = describe(exc)
            self._deliver(req, Error("study", req.error, req.study, req.epoch, req.id))
        finally:
            self._finished(req)

    def _serve_extras(self, req: Request, known: dict[str, Any], finish: bool = True) -> None:
        """Compute and deliver the extras of ``req`` not in ``known``, one by one (engine
        thread); stops when the request is cancelled."""
        try:
            for name in req.extras:
                if name in known:
                    continue
                if req.cancelled:
                    return
                try:
                    event = ExtraReady(req.id, req.study, req.epoch, dict(req.options), name,
                                       self._compute(name, req.epoch, {}, cancelled=lambda: req.cancelled))
                except _Cancelled:
                    return
                except Exception as exc:  # noqa: BLE001 - one line in the pane
                    event = ExtraReady(req.id, req.study, req.epoch, dict(req.options), name,
                                       error=f"{name}: {describe(exc)}")
                self._deliver(req, event)
        finally:
            if finish:
                self._finished(req)

    def _cached(self, study: str, epoch: int, options: dict[str, Any]) -> Any:
        with self._results_lock:
            return self._results.get(self._result_key(study, epoch, options))

    def _cached_extras(self, req: Request) -> dict[str, Any]:
        found = {name: self._cached(name, req.epoch, {}) for name in req.extras}
        return {name: result for name, result in found.items() if result is not None}

    def _ready(self, req: Request, result: Any, extras: dict[str, Any]) -> None:
        req.result = result
        pending = tuple(name for name in req.extras if name not in extras)
        self._deliver(req, ResultReady(req.id, req.study, req.epoch, dict(req.options), result, extras,
                                       pending=pending))

    def _finished(self, req: Request) -> None:
        with self._state_lock:
            if req in self._requests:
                self._requests.remove(req)
        req._done.set()

    def _deliver(self, req: Request, event: Event) -> None:
        with self._deliver_lock:
            if not req.cancelled:
                self._emit(event)
                with self._queue_cv:
                    self._delivered_at = time.monotonic()

    def _result_key(self, study: str, epoch: int, options: dict[str, Any]) -> tuple:
        with self._state_lock:
            schema = SCHEMAS.get(study)
            version = self._run_version if schema is not None and schema.scope == "run" else 0
        return (study, epoch, options_key(options), version)

    def _compute(self, study: str, epoch: int, options: dict[str, Any],
                 cancelled: Callable[[], bool] = lambda: False) -> Any:
        """The result of ``study`` from the result cache, else computed (engine lock held
        here). Raises _Cancelled when ``cancelled()`` turns true before the study starts."""
        from grok_engine.studies import run_study

        key = self._result_key(study, epoch, options)
        with self._engine_lock:
            with self._results_lock:
                hit = self._results.get(key)
            if hit is not None:
                return hit
            ctx = self._context(epoch)
            if cancelled():
                raise _Cancelled
            result = run_study(study, ctx, **options)
            self.computed["studies"] += 1
            with self._results_lock:
                if study == "progress":  # the curves study's phases read the measures it cached
                    self._results.drop(lambda k: k[0] != "curves")
                self._results.put(key, result)
            self._contexts.remeasure(self._context_key(epoch))  # the study may have grown it
            return result

    def _context_key(self, epoch: int) -> tuple[str, int]:
        return (str(self.run.path), epoch)

    def _context(self, epoch: int) -> Any:
        """The Context of ``epoch`` from the one cache (engine lock held)."""
        training = self.training
        if training != self._threads_for:  # only when it changes: a process-wide setting
            from grok_engine import runtime

            runtime.study_threads(training)
            self._threads_for = training
        key = self._context_key(epoch)
        selected = self.selected
        self._contexts.pinned = None if selected is None else self._context_key(selected)
        ctx = self._contexts.get(key)
        if ctx is None:
            from grok_engine.context import context_for

            ctx = context_for(self.run, epoch)
            self.computed["contexts"] += 1
            evicted = self._contexts.evictions
            self._contexts.put(key, ctx)
            if self._contexts.evictions != evicted:
                release_freed_memory()
        return ctx

    def cache_bytes(self) -> dict[str, int]:
        """Bytes held now by the context and result caches."""
        with self._engine_lock:
            with self._results_lock:
                return {"contexts": self._contexts.total_bytes, "results": self._results.total_bytes}

    def drop_caches(self) -> None:
        """Forget every cached context and result (a benchmark's cold start)."""
        with self._engine_lock:
            self._contexts.clear()
            with self._results_lock:
                self._results.clear()

    def cached_epochs(self) -> list[int]:
        """Epochs whose context is cached, oldest use first."""
        with self._engine_lock:
            return [epoch for _path, epoch in self._contexts.keys()]

    # -- prefetch ------------------------------------------------------------------------
    def _schedule_prefetch(self) -> None:
        if not self.prefetch_enabled:
            return
        with self._state_lock:
            self._prefetch_generation += 1
            generation, selected, visible = self._prefetch_generation, self._selected, self._visible
            if selected is None or selected not in self._epochs:
                return
            i = self._epochs.index(selected)
            sides = [i + self._direction, i - self._direction]
            neighbours = [self._epochs[j] for j in sides if 0 <= j < len(self._epochs)]
        # the selected checkpoint's context first (another pane shown there needs it), even
        # when its result came from the cache; then the neighbours
        self._submit(PRIORITY_PREFETCH_RESULT, lambda: self._prefetch_context(generation, selected))
        for epoch in neighbours:
            if visible is not None:
                study, options, extras = visible
                self._submit(PRIORITY_PREFETCH_RESULT,
                             lambda e=epoch: self._prefetch_result(generation, study, e, options, extras))
            else:
                self._submit(PRIORITY_PREFETCH_CONTEXT, lambda e=epoch: self._prefetch_context(generation, e))

    def _stale(self, generation: int) -> bool:
        with self._state_lock:
            return generation != self._prefetch_generation or self._closed

    def _request_waiting(self) -> bool:
        with self._queue_cv:
            return bool(self._queue) and self._queue[0][0] == PRIORITY_REQUEST

    def _prefetch_context(self, generation: int, epoch: int) -> None:
        if self._stale(generation):
            return
        try:
            with self._engine_lock:
                self._context(epoch)
        except Exception:  # noqa: BLE001 - a request for it reports the error
            pass

    def _prefetch_result(self, generation: int, study: str, epoch: int, options: dict[str, Any],
                         extras: tuple[str, ...]) -> None:
        """The visible study and its extras at ``epoch`` into the cache; yields to a user
        request between them (coming back after it)."""
        self._prefetch_context(generation, epoch)
        for name, name_options in [(study, options), *((extra, {}) for extra in extras)]:
            if self._request_waiting():  # a user request goes first; come back after it
                self._submit(PRIORITY_PREFETCH_RESULT,
                             lambda: self._prefetch_result(generation, study, epoch, options, extras))
                return
            if self._stale(generation):
                return
            try:
                self._compute(name, epoch, name_options, cancelled=lambda: self._stale(generation))
            except Exception:  # noqa: BLE001 - _Cancelled, or an error a request reports
                return

    # -- the engine thread ---------------------------------------------------------------
    def _submit(self, priority: int, job: Callable[[], None]) -> None:
        with self._queue_cv:
            if self._closed:
                return
            heapq.heappush(self._queue, (priority, next(self._ids), job))
            if self._engine is None:
                self._engine = threading.Thread(target=self._engine_loop, daemon=True, name="grok-engine")
                self._engine.start()
            self._queue_cv.notify_all()

    def _engine_loop(self) -> None:
        from grok_engine import runtime

        runtime.lower_thread_priority(ENGINE_NICE)
        while True:
            with self._queue_cv:
                while not self._queue and not self._closed:
                    self._queue_cv.wait()
                if self._closed:
                    self._queue.clear()
                    self._queue_cv.notify_all()
                    break
                grace = self._delivered_at + PREFETCH_GRACE_S - time.monotonic()
                if self._queue[0][0] != PRIORITY_REQUEST and grace > 0:
                    self._queue_cv.wait(grace)  # or until a request comes
                    continue
                _priority, _seq, job = heapq.heappop(self._queue)
                self._busy = True
            try:
                job()
            finally:
                with self._queue_cv:
                    self._busy = False
                    self._queue_cv.notify_all()
        with self._engine_lock:  # closed: the activations go now, whoever holds the session
            self._contexts.clear()
            with self._results_lock:
                self._results.clear()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the engine has nothing queued or running (prefetch included)."""
        with self._queue_cv:
            return self._queue_cv.wait_for(lambda: not self._queue and not self._busy, timeout)

    # -- training ------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        with self._state_lock:
            return self._train_thread is not None

    def _done_epochs(self) -> int:
        epochs = self.epochs
        return epochs[-1] if epochs else 0

    def resume(self) -> None:
        """Train on to the run's planned epochs; GrokError when training or complete."""
        done, planned = self._done_epochs(), self.run.config.train.epochs
        if not self.training and done >= planned:
            raise GrokError(f"run is complete ({done} epochs): c trains more")
        self.start_training()

    def extend(self, extra_epochs: int) -> int:
        """Train ``extra_epochs`` more from the last checkpoint; the run's plan is raised to
        that epoch first when it lies beyond it (recorded in its config). Returns the
        epoch it trains to."""
        if extra_epochs < 1:
            raise GrokError(f"epochs={extra_epochs} is not allowed: give 1 or more")
        until = self._done_epochs() + extra_epochs
        self.start_training(until_epoch=until)
        return until

    def start_training(self, until_epoch: int | None = None) -> None:
        """Start the training child (on the training thread) towards ``until_epoch``
        (default: the run's planned epochs), raising the plan first when ``until_epoch``
        is beyond it. Events: TrainingStarted, CheckpointsChanged per checkpoint,
        TrainingProgress, then TrainingEnded. GrokError when already training."""
        with self._state_lock:
            if self._train_thread is not None:
                raise GrokError("already training")
            self._client = None
            self._stop_asked = False
            self._train_state = {"epoch": self._done_epochs(), "start": self._done_epochs()}
            self._train_thread = threading.Thread(target=self._train, args=(until_epoch,),
                                                  daemon=True, name="grok-training")
            self._train_thread.start()

    def _train(self, until_epoch: int | None) -> None:
        try:
            run = self.run
            if until_epoch is not None and until_epoch > run.config.train.epochs:
                run = extend_plan(self.store, run, until_epoch)
                with self._state_lock:
                    self._run = run
                    self._run_version += 1
            client = TrainingClient(self.store.root, run.id, until_epoch, self._on_train_line, self._on_train_exit)
            with self._state_lock:
                self._client = client
                stop = self._stop_asked or self._closed
            if stop:
                client.stop()  # before the process exists: it stops at once
            self._emit(TrainingStarted(until_epoch or run.config.train.epochs))
            client.start()
        except Exception as exc:  # noqa: BLE001 - reported, never a traceback
            self._on_train_exit(describe(exc))
            return
        client.join()

    def _on_train_line(self, msg: dict[str, Any]) -> None:
        state = self._train_state
        epoch = msg.get("epoch", state["epoch"])
        state["epoch"] = epoch
        kind = msg["event"]
        if kind == "started":
            state["start"] = epoch
        elif kind == "checkpoint":
            self._add_epochs([epoch], throttle=True)
        elif kind == "progress":
            import numpy as np

            from grok_engine.train import Metrics

            chunk = Metrics(**{k: np.asarray(v) for k, v in msg["metrics"].items()})
            self._emit(TrainingProgress(chunk, epoch, msg["target"], msg["elapsed_s"], state["start"]))

    def _on_train_exit(self, error: str | None) -> None:
        self._flush_checkpoints()  # every checkpoint is announced before the end
        with self._state_lock:
            stopped = self._stop_asked
            self._train_thread = None
            self._client = None
            self._run_version += 1
        self._emit(TrainingEnded(self._train_state["epoch"], stopped, error))

    def stop_training(self) -> None:
        """Ask the training child to stop after writing a checkpoint; GrokError when not
        training."""
        with self._state_lock:
            if self._train_thread is None:
                raise GrokError("not training")
            self._stop_asked = True
            client = self._client
        if client is not None:
            client.stop()

    def wait_training(self, timeout: float | None = None) -> bool:
        """Wait until training (if any) has ended and TrainingEnded was emitted."""
        with self._state_lock:
            thread = self._train_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.training

    # -- export --------------------------------------------------------------------------
    def export_item(self, item: Any, path: str | os.PathLike) -> Path:
        """Write one Table or Grid to ``path`` as CSV (grok_engine.export.write_csv)."""
        from grok_engine.export import write_csv

        return write_csv(item, path)

    def export_checkpoint(self, epoch: int, folder: str | os.PathLike, studies: Iterable[str] | None = None,
                          on_result: Callable[[Any, list[Path]], None] | None = None) -> list[Path]:
        """Every study (or ``studies``) at ``epoch`` written into ``folder`` by
        grok_engine.export.export_all, from the session's context cache (the caller's
        thread, under the engine lock). Returns the paths written, one per file."""
        from grok_engine.export import export_all

        with self._engine_lock:
            return export_all(self._context(epoch), folder, studies, on_result)

    # -- the end -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop training (it writes a checkpoint), cancel every request, end the engine
        thread and let go of the caches and the listener. Returns at once."""
        with self._state_lock:
            self._closed = True
            requests, self._requests = self._requests, []
            self._stop_asked = True
            client = self._client
            if self._follow_timer is not None:
                self._follow_timer.cancel()
        for req in requests:
            req.cancel()
        if client is not None:
            client.stop()
        with self._queue_cv:
            self._queue.clear()
            self._queue_cv.notify_all()
        self.listener = None
        if self._engine_lock.acquire(timeout=0):  # else the engine thread frees them after its job
            try:
                self._contexts.clear()
                with self._results_lock:
                    self._results.clear()
            finally:
                self._engine_lock.release()

    def _emit(self, event: Event) -> None:
        listener = self.listener
        if listener is not None:
            listener(event)


class _Cancelled(Exception):
    """The request was cancelled between two steps of its computation."""
