"""Process-wide state, set in one place: torch's threads, BLAS thread pools, the process's
priority, the garbage collector's frozen heap, and the fast exit.

Who sets what (entry points only; nothing below an entry point changes these):

- ``configure("train", config=..., device=...)``: ``grok-tui train``. A small model on the
  CPU gets one torch thread: its ops are microseconds and a second OpenMP thread only
  spins against the checkpoint writer (measured: p=10, 1000 epochs, 11.9 s with 2
  threads, 4.8 s with 1).
- ``configure("child")``: the training process the app starts (``grok_engine.train_process``).
  It leaves a core to the app and yields to it when the cores are contended (nice 10): a
  key press or a study of the app waits for nothing.
- ``configure("pack")``: a sweep's worker process (local or a Ray task): one torch thread,
  the other cores run the other packs.
- ``grok-tui export`` and ``grok-tui runs`` keep torch's defaults (the studies alone in
  their process split well over every core).
- the app (``grok_tui.app``) imports torch in a worker after its first paint, so it sets
  nothing at start: :func:`study_threads` before each study (one core fewer while its
  training child runs), :func:`freeze` once the engine is warm, :func:`refreeze` after a
  screen that held engine state has been removed, :func:`thaw` when it exits.

The trainer's numpy path holds BLAS to one thread for its loop (:func:`single_blas_thread`).
Headless commands and the training child leave through :func:`exit_now`.

Light: torch and threadpoolctl are imported by the calls that need them.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from typing import Any, ContextManager

ROLES = ("train", "child", "pack")

# Below this many multiply-adds per layer of a full batch (rows x d_model x d_mlp) a CPU
# model trains faster on one torch thread (see the module docstring).
SMALL_MODEL_WORK = 50_000_000


def configure(role: str, config: Any = None, device: Any = None) -> None:
    """Set this process up for ``role`` (one of ROLES, see the module docstring); for
    "train", ``config`` (a RunConfig) and ``device`` (the trainer's torch.device)."""
    if role not in ROLES:
        raise ValueError(f"runtime role {role!r} is not one of {', '.join(ROLES)}")
    import torch

    keep_freed_memory()
    if role == "train":
        t, m = config.task, config.model
        if device.type == "cpu" and t.n_rows * m.d_model * m.d_mlp < SMALL_MODEL_WORK:
            torch.set_num_threads(1)
    elif role == "pack":  # a sweep's worker process: one pack of small models per core
        torch.set_num_threads(1)
    elif role == "child":
        torch.set_num_threads(max(1, cores() - 1))
        if hasattr(os, "nice"):
            os.nice(10)


# glibc's malloc serves a block above M_MMAP_THRESHOLD (at first 128 KiB, raised as such
# blocks are freed) with its own mmap and unmaps it at free, and trims the heap's top past
# M_TRIM_THRESHOLD. An epoch of a p=113 model allocates and frees ~30 MB of activations, so
# each epoch faulted them in again, the kernel zeroing every 4 KiB page: ~7000 minor faults
# and ~20 ms of system time per epoch (mod_add p=113, frac 0.3, on the AMD EPYC). With the
# thresholds at their 64-bit maximum (32 MiB) freed blocks stay in the heap for the next
# epoch; the heap holds what one epoch needs at its peak. The numpy path's temporaries
# (blocks of 50-400 KB) likewise: ~500 page faults per epoch for a pack of 8 at p=23
# without it, none with it.
MMAP_THRESHOLD_MAX = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the heap (see above); False where the C library is not
    glibc's or refuses."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            and mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX) == 1)


def release_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; a no-op
    elsewhere). After freeing a large mmapped block glibc raises its mmap threshold (up to
    32 MB), so the tensors of later contexts (~26 MB each at p=113) come from the heap, and
    when one is evicted its pages can stay in the process: RSS would grow past what the
    caches hold. Called after an eviction, on the engine thread (well under a ms here)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def cores() -> int:
    return os.cpu_count() or 1


def study_threads(training: bool) -> int:
    """Set torch's threads for one study of the app, and return how many: every core, or
    all but one while a training process runs.

    A study is a few large ops (a forward over p*p rows, transforms over the (a, b) grid)
    that split well: at p=113 on 2 cores the Fourier pane's switch takes ~390 ms with 2
    threads against ~560 ms with 1. While training runs in its child process it holds a
    core, and OpenMP threads that share a core with it stall at every barrier.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = max(1, cores() - 1) if training else cores()
    torch.set_num_threads(threads)
    # numpy's BLAS too (the probe's float64 solve, the studies' SVDs): its threads spin on
    # after each call, and two of them beside the training child left the UI thread no core
    threadpool_limits(threads, user_api="blas")
    return threads


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (Linux: nice is per thread).
    The app's engine thread: its studies and prefetch then yield the CPU to the UI thread
    drawing a result (they cannot come back: lowering nice needs a privilege). A no-op
    where the OS has no per-thread priority."""
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or refused
        pass


def single_blas_thread() -> ContextManager:
    """numpy's BLAS on one thread inside the ``with`` (the trainer's numpy path: matrices of
    a few hundred rows are too small to split, and BLAS's and OpenMP's spinning workers
    fight each other for the cores: p=10 on 2 cores, 8.7 ms per epoch with the default
    threads, 1.3 ms with one)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


# -- the frozen heap (the app) --------------------------------------------------------
# About 400,000 objects (the modules, classes and functions of torch, transformer_lens,
# scikit-learn and textual) live as long as the app, yet every full collection walked them
# all: a 270-360 ms stop of the UI thread every second or so while training streams
# metrics. ``freeze`` moves everything alive out of the collector's reach once the imports
# are done; a full collection then walks only what the app made since (~15 ms). A frozen
# object is never collected, so whatever was alive at the freeze and is let go later (the
# screen of a run another run replaced, with its activation caches) needs ``refreeze``;
# ``thaw`` gives everything back when the app exits (several apps in one process: tests).

def freeze() -> None:
    """Collect first (start-up garbage stays collectable), then freeze what is alive."""
    gc.collect()
    gc.freeze()


def refreeze() -> None:
    """Something frozen was let go: thaw, collect it, freeze the rest again (~0.3 s). Call
    it once the object is gone (a screen: after its removal has completed)."""
    gc.unfreeze()
    freeze()


def thaw() -> None:
    """Make every frozen object collectable again."""
    gc.unfreeze()


# -- leaving ---------------------------------------------------------------------------

def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, which takes ~0.5 s once torch is loaded
    (measured on a 2-core CPU: longer than a 500-epoch run). Only for a process that has
    closed every file it wrote and joined its writer threads: a headless command, the
    training child. atexit handlers still run, deaf to Ctrl-C (a KeyboardInterrupt in one
    prints a traceback); stdout and stderr are flushed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`grok-tui runs | head -1`)
            pass
    os._exit(code)
