"""Training a sweep's members: grouped into packs of same-shape members, the packs run by
the local executor (parallel processes) or by Ray (tasks on a cluster).

A pack is trained by a ``train_pack(runs_dir, run_ids, device="auto", stop=None,
on_progress=None) -> {run_id: "done" | "stopped" | "diverged"}`` function (the sweep
contract): :func:`grok_engine.sweep.pack.train_pack` (one stacked model), or in tests
:func:`train_pack_solo` (each member in turn on the solo path, as ``grok-tui train``
does). Either resumes every member from its own last checkpoint, so a
pack that is run again (after a SIGKILL, or Ray retrying a killed worker) continues where
each member's files end and skips the finished ones.

Both executors write straight into the runs folder (Ray workers: a folder shared by every
node). That is safe because every file of a run is written atomically (temp file, fsync,
rename) and each member has its own lock (``Run.lock``), so two workers never train one
member and a killed worker leaves whole files only.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue as queue_mod
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.sweep import workers as workers_mod
from grok_engine.sweep.store import DIVERGED, DONE, Sweep, SweepStore, member_status

TrainPack = Callable[..., dict[str, str]]
OnProgress = Callable[[str, int, int], None]  # (run_id, epoch, target epoch)
LOCAL_WORKERS = 2  # one process per core of the 2-core CI machine, one thread each
PROGRESS_EVERY_S = 0.25  # a worker reports a member's epoch at most this often
RAY_MAX_RETRIES = 3  # a pack whose worker dies is run again, resuming from checkpoints


@dataclass(frozen=True)
class Pack:
    """Members trained together: their run ids, all of one shape."""

    run_ids: tuple[str, ...]
    shape: tuple


def default_train_pack() -> TrainPack:
    """The stacked trainer (imported when a sweep trains: it brings torch)."""
    from grok_engine.sweep.pack import train_pack

    return train_pack


def pack_limit(config: RunConfig, device: str, n_members: int) -> int:
    """How many members of ``config``'s shape one pack may hold on ``device``: what the
    stacked trainer measured (``grok_engine.sweep.pack.pack_size``)."""
    from grok_engine.sweep.pack import pack_size

    return max(1, int(pack_size(device, config)))


def make_packs(sweep: Sweep, run_ids: list[str], device: str, workers: int,
               limit: Callable[[RunConfig, str, int], int] = pack_limit) -> list[Pack]:
    """``run_ids`` (members of ``sweep``) grouped by shape, each group cut into packs of
    at most ``limit`` members, and evenly: ceil(group / workers) when that is smaller,
    so that every worker gets a pack. Members order is kept within a pack."""
    from grok_engine.sweep.stacked import shape_key  # what a pack's members must share

    index = {rid: i for i, rid in enumerate(sweep.run_ids)}
    groups: dict[tuple, list[str]] = {}
    configs: dict[tuple, RunConfig] = {}
    for rid in run_ids:
        config = sweep.member_config(index[rid])
        key = shape_key(config)
        groups.setdefault(key, []).append(rid)
        configs.setdefault(key, config)
    packs = []
    for key, members in groups.items():
        size = min(limit(configs[key], device, len(members)), math.ceil(len(members) / max(1, workers)))
        size = max(1, size)
        packs += [Pack(tuple(members[i:i + size]), key) for i in range(0, len(members), size)]
    return packs


def pending_members(store: SweepStore, sweep: Sweep) -> list[str]:
    """The members still to train: neither done nor diverged."""
    return [rid for rid in sweep.run_ids
            if member_status(store.runs, rid, sweep.stop_at_test_acc) not in (DONE, DIVERGED)]


# -- the solo path -------------------------------------------------------------------------
def train_pack_solo(runs_dir: str | os.PathLike, run_ids: list[str], device: str = "auto",
                    stop: Callable[[], bool] | None = None,
                    on_progress: OnProgress | None = None) -> dict[str, str]:
    """train_pack's contract on the solo path: each member in turn, from its last
    checkpoint to its config's epochs, through ``Run.trainer`` and ``AsyncWriter``
    exactly as ``grok-tui train`` writes it. Once ``stop()`` is true the member in
    training checkpoints and the rest are left "stopped"."""
    from grok_engine.store import AsyncWriter, RunStore
    from grok_engine.train import Progress

    store = RunStore(runs_dir)
    should_stop = stop or (lambda: False)
    states: dict[str, str] = {}
    for run_id in run_ids:
        run = store.open(run_id)
        target = run.config.train.epochs
        if run.diverged() is not None:
            states[run_id] = DIVERGED
            continue
        if run.epochs_done() >= target:
            states[run_id] = DONE
            continue
        if should_stop():
            states[run_id] = "stopped"
            continue
        with run.lock():
            trainer = run.trainer(device=None if device == "auto" else device)
            writer = AsyncWriter(run)

            def on_event(event, run_id=run_id) -> None:
                writer(event)
                if on_progress is not None and isinstance(event, Progress):
                    on_progress(run_id, event.epoch, target)

            try:
                trainer.run(callback=on_event, stop=should_stop, until_epoch=target)
            finally:
                writer.close()
        if trainer.diverged is not None:
            states[run_id] = DIVERGED
        else:
            states[run_id] = DONE if trainer.epoch >= target else "stopped"
    return states


# -- the local executor --------------------------------------------------------------------
_worker_queue = None
_worker_stop = None


def _die_with_parent(driver: int) -> None:
    """Make this worker die with the driver, process ``driver`` (a SIGKILLed ``grok-tui
    sweep`` must not leave workers training, holding the members' locks). A spawned worker,
    the driver's child: PR_SET_PDEATHSIG on Linux. A worker forked by the fork server
    (``grok_engine.sweep.workers``), or where prctl is missing: a thread that exits the
    process once the driver has (the server cannot pass the signal on: every worker holds
    the pipe end whose closing would end the server). The driver's pid comes from the
    driver: a read here could already be init's, when the driver died while this worker
    was still starting."""
    if not _pid_alive(driver):
        os._exit(1)
    if os.getppid() == driver:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG = 1
                if os.getppid() != driver:  # the driver died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_exit_after, args=(driver,), daemon=True, name="driver-watch").start()


def _exit_after(driver: int) -> None:
    """Exit this process once process ``driver`` has exited: at once through a pidfd
    (Linux 5.3+: readable when the process ends), else by polling every 0.5 s."""
    import select

    try:
        fd = os.pidfd_open(driver)
    except (AttributeError, OSError):  # not Linux, an old kernel
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while _pid_alive(driver):
            time.sleep(0.5)
    os._exit(1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _local_worker_init(driver_pid: int, progress_queue, stop_event) -> None:
    """One worker process: one thread (a small model's ops do not split), deaf to Ctrl-C
    (the driver sets ``stop_event``: the pack checkpoints and returns)."""
    global _worker_queue, _worker_stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see workers.sigint_blocked
    _die_with_parent(driver_pid)
    from grok_engine import runtime

    runtime.configure("pack")
    _worker_queue, _worker_stop = progress_queue, stop_event


def _throttled(report: Callable[[str, int, int], None]) -> OnProgress:
    """``report`` called at most every PROGRESS_EVERY_S per member, and at its target."""
    last: dict[str, float] = {}

    def on_progress(run_id: str, epoch: int, target: int) -> None:
        now = time.monotonic()
        if epoch >= target or now - last.get(run_id, -1e9) >= PROGRESS_EVERY_S:
            last[run_id] = now
            report(run_id, epoch, target)

    return on_progress


def _local_pack(runs_dir: str, run_ids: tuple[str, ...], train_pack: TrainPack,
                device: str) -> dict[str, str]:
    """A pack in a worker process; a GrokError (a member locked by another process, a
    corrupt file) becomes each member's "failed: ..." state instead of ending the sweep."""
    report = _throttled(lambda rid, e, t: _worker_queue.put((rid, e, t)))
    try:
        return train_pack(runs_dir, list(run_ids), device=device, stop=_worker_stop.is_set,
                          on_progress=report)
    except GrokError as exc:
        return {rid: f"failed: {exc}" for rid in run_ids}


def run_local(runs_dir: str | os.PathLike, packs: list[Pack], train_pack: TrainPack,
              device: str = "auto", workers: int = LOCAL_WORKERS,
              on_progress: OnProgress | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, str]:
    """Run ``packs`` in up to ``workers`` processes (forked from a fork server that imported
    the trainer, or spawned: ``grok_engine.sweep.workers``), at most one pack per process at
    a time.
    ``on_progress`` is called in this thread; ``stop()`` polled here asks every pack to
    checkpoint and return. Returns each member's end state."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if not packs:
        return {}
    ctx = workers_mod.context()
    progress_queue, stop_event = ctx.Queue(), ctx.Event()
    states: dict[str, str] = {}
    with workers_mod.sigint_blocked():  # the pool starts its processes and its manager thread here
        pool = ProcessPoolExecutor(max_workers=min(workers, len(packs)), mp_context=ctx,
                                   initializer=_local_worker_init,
                                   initargs=(os.getpid(), progress_queue, stop_event))
        futures = {pool.submit(_local_pack, str(runs_dir), p.run_ids, train_pack, device)
                   for p in packs}
    with pool:
        while futures:
            if stop is not None and stop():
                stop_event.set()
            done, futures = wait(futures, timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(progress_queue, on_progress)
            for future in done:
                states.update(future.result())
        _drain(progress_queue, on_progress)
    return states


def _drain(progress_queue, on_progress: OnProgress | None) -> None:
    while True:
        try:
            item = progress_queue.get_nowait()
        except (queue_mod.Empty, OSError, ValueError):
            return
        if on_progress is not None:
            on_progress(*item)


# -- the Ray executor ----------------------------------------------------------------------
def _ray_control_class():
    import ray

    @ray.remote(num_cpus=0)
    class SweepControl:
        """The driver's end of the packs: their progress reports, the workers' pids
        (a pack reports its pid each time it starts, retries too) and the stop flag."""

        def __init__(self):
            self.reports: list[tuple[str, int, int]] = []
            self.starts: list[tuple[int, tuple[str, ...]]] = []
            self.stopping = False

        def started(self, pid: int, run_ids: tuple[str, ...]) -> None:
            self.starts.append((pid, tuple(run_ids)))

        def report(self, run_id: str, epoch: int, target: int) -> bool:
            self.reports.append((run_id, epoch, target))
            return self.stopping

        def take(self):
            out, self.reports = self.reports, []
            return out, list(self.starts)

        def stop(self) -> None:
            self.stopping = True

        def is_stopping(self) -> bool:
            return self.stopping

    return SweepControl


def _ray_pack(runs_dir: str, run_ids: tuple[str, ...], train_pack: TrainPack, device: str,
              control) -> dict[str, str]:
    """A pack as a Ray task (retried by Ray when its worker dies: the pack then resumes
    every member from its last checkpoint)."""
    import ray

    from grok_engine import runtime

    runtime.configure("pack")
    ray.get(control.started.remote(os.getpid(), tuple(run_ids)))
    stopping = {"now": False, "asked": 0.0}

    def stop() -> bool:  # asks the driver at most every PROGRESS_EVERY_S
        now = time.monotonic()
        if not stopping["now"] and now - stopping["asked"] >= PROGRESS_EVERY_S:
            stopping["asked"] = now
            stopping["now"] = ray.get(control.is_stopping.remote())
        return stopping["now"]

    report = _throttled(lambda rid, e, t: control.report.remote(rid, e, t))
    try:
        return train_pack(runs_dir, list(run_ids), device=device, stop=stop, on_progress=report)
    except GrokError as exc:
        return {rid: f"failed: {exc}" for rid in run_ids}


def ray_gpu_fraction(n_packs: int, gpus: float) -> float:
    """The GPU share a pack asks for: the cluster's GPUs split over the packs, at most one
    and at least a tenth (no GPU: zero)."""
    if gpus <= 0:
        return 0.0
    return max(0.1, min(1.0, gpus / max(1, n_packs)))


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray connected to the cluster at ``address``, or a local Ray started here (with
    ``num_cpus``) and shut down on leaving; yields the cluster's CPU count."""
    try:
        import ray
    except ImportError:
        raise GrokError("--executor ray needs Ray: pip install 'grok-tui[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, num_cpus=None if address else num_cpus,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise GrokError(f"--ray-address {address!r}: cannot connect ({str(exc)[:100]})") from None
    try:
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started_here:
            ray.shutdown()


def run_ray(runs_dir: str | os.PathLike, packs: list[Pack], train_pack: TrainPack,
            device: str = "auto", on_progress: OnProgress | None = None,
            stop: Callable[[], bool] | None = None,
            on_worker: Callable[[int, tuple[str, ...]], None] | None = None,
            max_retries: int = RAY_MAX_RETRIES) -> dict[str, str]:
    """Run ``packs`` as Ray tasks (inside :func:`ray_session`), one CPU each and a share
    of a GPU where the cluster has GPUs. Every worker writes into ``runs_dir``, which
    must be the same folder on every node. ``on_worker(pid, run_ids)`` is told each time
    a pack starts in a worker process (retries too). Returns each member's end state."""
    import ray

    if not packs:
        return {}
    control = _ray_control_class().remote()
    gpu = ray_gpu_fraction(len(packs), float(ray.cluster_resources().get("GPU", 0)))
    task = ray.remote(_ray_pack).options(num_cpus=1, num_gpus=gpu, max_retries=max_retries,
                                         retry_exceptions=False)
    root = str(Path(runs_dir).resolve())
    pending = {task.remote(root, p.run_ids, train_pack, device, control): p for p in packs}
    states: dict[str, str] = {}
    seen_starts = 0
    while pending:
        if stop is not None and stop():
            control.stop.remote()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
        reports, starts = ray.get(control.take.remote())
        for pid, run_ids in starts[seen_starts:]:
            if on_worker is not None:
                on_worker(pid, run_ids)
        seen_starts = len(starts)
        for item in reports:
            if on_progress is not None:
                on_progress(*item)
        for ref in ready:
            pack = pending.pop(ref)
            try:
                states.update(ray.get(ref))
            except ray.exceptions.RayError as exc:  # retries spent: the members stay resumable
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
                states.update({rid: f"failed: {first}" for rid in pack.run_ids})
    return states


# -- one call for the command --------------------------------------------------------------
def execute(store: SweepStore, sweep: Sweep, executor: str = "local",
            train_pack: TrainPack | None = None, device: str = "auto",
            on_progress: OnProgress | None = None, stop: Callable[[], bool] | None = None,
            ray_address: str | None = None, workers: int = LOCAL_WORKERS,
            limit: Callable[[RunConfig, str, int], int] = pack_limit,
            on_packs: Callable[[list[Pack]], None] | None = None,
            **ray_options: Any) -> tuple[list[Pack], dict[str, str]]:
    """Train every member of ``sweep`` that is neither done nor diverged (creating any a
    SIGKILL kept from being created), in packs spread evenly over the ``workers``
    processes (Ray: over the cluster's CPUs). ``on_packs(packs)`` is told the packs
    before training starts. Returns the packs and the end states of the members trained.
    ``ray_options``: ``num_cpus`` (of a local Ray), ``on_worker``, ``max_retries``."""
    store.ensure_members(sweep)
    todo = pending_members(store, sweep)
    train_pack = train_pack or default_train_pack()
    if sweep.stop_at_test_acc is not None:  # a partial of a module function: it pickles
        train_pack = functools.partial(train_pack, stop_at_test_acc=sweep.stop_at_test_acc)
    if executor == "ray":
        with ray_session(ray_address, ray_options.pop("num_cpus", None)) as cpus:
            packs = make_packs(sweep, todo, device, cpus, limit)
            if on_packs is not None:
                on_packs(packs)
            return packs, run_ray(store.root, packs, train_pack, device, on_progress, stop,
                                  **ray_options)
    packs = make_packs(sweep, todo, device, workers, limit)
    if on_packs is not None:
        on_packs(packs)
    return packs, run_local(store.root, packs, train_pack, device, workers, on_progress, stop)
