"""The checkpoint writer's thread runs no torch op: one there gets an OpenMP team of its
own, libgomp then counts more threads than cores and stops spinning at its barriers, and
every parallel op of the trainer sleeps and wakes (``grok_engine.store.atomic_save_tensors``
says what it cost). Counted as the process's OS threads, which a new team adds to."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from grok_engine.store import RunStore
from grok_engine.train import Checkpoint
from tests.fixtures import tiny_config

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts Linux threads")


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def threads_while(work) -> tuple[int, int]:
    """(OS threads before, OS threads once ``work`` has run on a new thread that is still
    alive): a team that thread started lives as long as it does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a team has two threads, as the p=113 trainer's on 2 cores
    done, release = threading.Event(), threading.Event()

    def body():
        try:
            work()
        finally:
            done.set()
            release.wait()

    try:
        before = os_threads()
        worker = threading.Thread(target=body)
        worker.start()
        done.wait()
        during = os_threads()
        release.set()
        worker.join()
    finally:
        torch.set_num_threads(threads)
    return before, during


def test_writing_checkpoints_on_another_thread_starts_no_openmp_team(tmp_path):
    store = RunStore(tmp_path)
    run = store.create(tiny_config(task="mod_add", p=7, frac_train=0.5, epochs=4, checkpoint_every=2),
                       run_id="r")
    events: list[Checkpoint] = []
    run.trainer().run(callback=lambda e: events.append(e) if isinstance(e, Checkpoint) else None)
    before, during = threads_while(lambda: [run.write_checkpoint(e) for e in events])
    assert during == before + 1  # the writer's thread alone
    assert store.open("r").checkpoint_epochs() == [0, 2, 4]


def test_a_torch_op_on_another_thread_would_start_one():
    """The count above can fail: a parallel torch op on a fresh thread adds a team."""
    before, during = threads_while(lambda: torch.tril(torch.ones(3, 3)))
    assert during > before + 1
