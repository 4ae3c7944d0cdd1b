"""Train a pack of same-shape member runs of the store as one stacked model.

:func:`train_pack` is what a sweep executor calls (locally or in a Ray task) for each pack
of member runs (see the sweep contract): every member is an ordinary run folder, trained
from its own newest (checkpoint, resume state) pair to its own config's epochs, with its
checkpoints, metrics and divergence written exactly as ``grok-tui train`` writes them (the
run store's :class:`~grok_engine.store.AsyncWriter`, one per member). So a pack killed at
any moment resumes member by member: each from where its own files end, and a member that
had finished is not trained again.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Callable, Sequence

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.store import AsyncWriter, Run, RunStore
from grok_engine.sweep.stacked import DIVERGED, DONE, STOPPED, StackedTrainer, shape_key, stackable
from grok_engine.train import MANUAL_MAX_P, Progress, Trainer

ProgressFn = Callable[[str, int, int], None]

# Members per pack on the CPU's numpy path. Measured with bench/pack_size.py (mod_add, frac
# 0.3, one thread, AMD EPYC: 2 cores, 1 MiB L2, 32 MiB L3, shared with other jobs): model-
# epochs per CPU-second (wall clock swung 2x between runs) against the solo trainer's, at
# 1 / 2 / 4 / 8 / 16 / 32 members:
#   p=11 d_model 32     0.99  1.50  1.57  1.96  2.44  2.16
#   p=11 notebook       0.82  1.03  1.28  1.43  1.85   -
#   p=17 d_model 32     0.82  1.12  1.46  1.26  1.40   -
#   p=23 d_model 32     0.85  1.30  0.89  0.93  0.87  1.01
#   p=23 notebook       1.24  0.99  1.09  1.23  1.27  1.43   (noisiest)
# Stacking saves numpy's per-op overhead, which dominates at small p; at p=23 the matmuls
# dominate and a pack is about as fast as the solo trainer, so there a sweep's speed comes
# from packs running in parallel processes (one thread each). 16 is the best or near it
# everywhere measured. A pack of one member trains with the solo trainer (0.8x as a stack),
# unless it has a stop-at-test-acc: the stack stops at that epoch exactly, the solo trainer
# at its next report.
CPU_PACK = 16
# On a GPU: members of one pack up to this many, fewer when their memory would pass
# GPU_MEMORY_SHARE of the free device memory (grok_engine.memory's estimate of one run,
# twice over for vmap's batched intermediates and the padded rows).
GPU_PACK_MAX = 512
GPU_MEMORY_SHARE = 0.6


def pack_size(device: str, config: RunConfig) -> int:
    """How many members of ``config``'s shape to stack in one pack on ``device`` ("cpu",
    "cuda", "mps", "auto"): CPU_PACK on the CPU's numpy path, 1 on the CPU otherwise (no
    stacking there, see :func:`~grok_engine.sweep.stacked.stackable`), on a GPU as many as
    fit in its free memory, up to GPU_PACK_MAX."""
    from grok_engine.memory import device_available, estimate, host_available
    from grok_engine.train import pick_device

    dev = pick_device(device if device != "auto" else config.train.device)
    if dev.type == "cpu":
        t, m = config.task, config.model
        numpy_path = (t.p <= MANUAL_MAX_P and m.n_layers == 1 and m.normalization == "none"
                      and m.act_fn == "relu" and config.train.freeze_biases)
        if not numpy_path:
            return 1
        need, free = estimate(config, "cpu").total, host_available()
        return max(1, min(CPU_PACK, int(0.5 * free // need))) if free else CPU_PACK
    need = 2 * estimate(config, dev.type).device
    free = device_available(dev) or host_available()  # mps: the host's memory
    if not free:
        return GPU_PACK_MAX
    return max(1, min(GPU_PACK_MAX, int(GPU_MEMORY_SHARE * free // need)))


def train_pack(runs_dir: str | os.PathLike, run_ids: Sequence[str], device: str = "auto",
               stop: Callable[[], bool] | None = None, on_progress: ProgressFn | None = None,
               *, stop_at_test_acc: float | None = None) -> dict[str, str]:
    """Train the member runs ``run_ids`` of ``runs_dir`` (same shapes) to their configs'
    epochs as one stacked model; returns each run's end state: "done", "stopped" (``stop()``
    returned True: every member is checkpointed where it stands) or "diverged".

    ``device``: "auto" (the config's choice), "cpu", "cuda" or "mps". ``on_progress(run_id,
    epoch, target)`` is called as members advance. ``stop_at_test_acc``: a member whose test
    accuracy reaches it stops there, checkpointed ("done"), as ``grok-tui train
    --stop-at-test-acc``. Members of different shapes, or a run another process trains
    (its lock), are a GrokError before anything is trained."""
    store = RunStore(runs_dir)
    runs = [store.open(run_id) for run_id in run_ids]
    _check_shapes(runs)
    states: dict[str, str] = {}
    with ExitStack() as held:
        for run in runs:  # every lock first: a member trained elsewhere stops the pack here
            held.enter_context(run.lock())
        todo = []
        for run in runs:
            state = _finished(run, stop_at_test_acc)
            if state is not None:
                states[run.id] = state  # done or diverged: not trained again
            else:
                todo.append(run)
        if todo:
            states.update(_train(todo, None if device == "auto" else device, stop, on_progress,
                                 stop_at_test_acc))
    return {run_id: states[run_id] for run_id in run_ids}


def _check_shapes(runs: list[Run]) -> None:
    keys = {shape_key(run.config) for run in runs}
    if len(keys) > 1:
        first = runs[0]
        other = next(run for run in runs if shape_key(run.config) != shape_key(first.config))
        raise GrokError(f"runs {first.id} and {other.id} differ in shape (task, p or model dims): "
                        f"a pack trains one shape; group the members by shape")


def _finished(run: Run, stop_at_test_acc: float | None = None) -> str | None:
    """"diverged" or "done" for a run with nothing left to train (its epochs, or its test
    accuracy reached ``stop_at_test_acc`` by its last checkpoint), else None."""
    from grok_engine.sweep.store import reached

    if run.diverged() is not None:
        return DIVERGED
    if run.epochs_done() >= run.config.train.epochs or reached(run, stop_at_test_acc):
        return DONE
    return None


def _train(runs: list[Run], device: str | None, stop: Callable[[], bool] | None,
           on_progress: ProgressFn | None, stop_at_test_acc: float | None) -> dict[str, str]:
    trainers = [run.trainer(device=device) for run in runs]
    with ExitStack() as writers:
        listeners = [_listener(run, writers.enter_context(AsyncWriter(run)), on_progress) for run in runs]
        if stackable(trainers) and (len(trainers) > 1 or stop_at_test_acc is not None):
            pack = StackedTrainer(trainers, listeners, stop_at_test_acc=[stop_at_test_acc] * len(runs))
            states = pack.run(stop=stop)
        else:  # no stacked forward for this model yet (module docstring of stacked.py)
            asked = stop or (lambda: False)
            states = [STOPPED if asked() else _train_solo(t, listener, asked, stop_at_test_acc)
                      for t, listener in zip(trainers, listeners)]
    return {run.id: state for run, state in zip(runs, states)}


def _listener(run: Run, writer: AsyncWriter, on_progress: ProgressFn | None):
    def listen(event) -> None:
        writer(event)
        if on_progress is not None and isinstance(event, Progress):
            on_progress(run.id, event.epoch, event.target_epoch)
    return listen


def _train_solo(trainer: Trainer, listener, stop: Callable[[], bool],
                stop_at_test_acc: float | None) -> str:
    """One member with the solo trainer, stopping where the stacked one would."""
    reached = []

    def listen(event) -> None:
        listener(event)
        if stop_at_test_acc is not None and isinstance(event, Progress) and not reached:
            reached.extend(event.metrics.test_acc[event.metrics.test_acc >= stop_at_test_acc][:1])

    trainer.run(callback=listen, stop=lambda: bool(reached) or stop())
    if trainer.diverged is not None:
        return DIVERGED
    return DONE if reached or trainer.epoch >= trainer.config.train.epochs else STOPPED
