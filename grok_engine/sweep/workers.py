"""How the local executor's worker processes start: forked from a server that imported the
trainer once, where the platform has one. Light: multiprocessing only, so the sweep command
can start that server before it imports torch itself.

A spawned worker imports torch and the trainer afresh (~3 s of CPU each on the 2-core AMD
EPYC), and only after the driver's own import: a 16-member p=23 sweep spent ~6 s before its
first epoch. With the forkserver start method the server imports :data:`PRELOAD` once, beside
the driver's import (:func:`start_early`), and each worker is a fork of it, torch already
loaded. The server runs no torch op (it only imports), so a fork of it has no OpenMP pool to
break; numpy's OpenBLAS re-creates its threads after a fork.

The server is a child of the driver and exits once the driver and every worker are gone
(each holds the write end of the pipe whose closing ends it). A worker's parent is the
server, not the driver, so ``grok_engine.sweep.executor._die_with_parent`` watches the
driver by its pid.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from typing import Any

PRELOAD = ["grok_engine.sweep.pack"]  # the trainer, torch and numpy with it


def context() -> Any:
    """The multiprocessing context of the local executor's workers: "forkserver" with
    :data:`PRELOAD` where the platform has it, else "spawn" (a forked torch is fragile)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_early() -> None:
    """Start the fork server now (it imports :data:`PRELOAD` while the caller goes on); a
    no-op where workers are spawned. The server starts with SIGINT blocked
    (:func:`sigint_blocked`), as every worker forked from it then does."""
    if context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with sigint_blocked():
            forkserver.ensure_running()


@contextlib.contextmanager
def sigint_blocked():
    """SIGINT blocked in this thread meanwhile: the processes (and threads) started here
    inherit the mask, so a Ctrl-C during a worker's start (before it ignores SIGINT)
    waits, and is then dropped, instead of printing a KeyboardInterrupt traceback."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
