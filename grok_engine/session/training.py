"""The client side of ``grok_engine.train_process``: start the training child, read its
JSON lines on a thread of our own, stop it.

Why a child process, not a thread: training holds the GIL about half the time, which made
every render and key press of the app twice as slow (see ``grok_engine.train_process``).
The child persists every checkpoint before reporting it, so a reported checkpoint is on
disk. Its stderr goes to a temporary file, never the terminal a front end draws on; its
last line names a crash the child could not report itself (killed, failed to start).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from grok_engine.errors import GrokError


def extend_plan(store: Any, run: Any, epochs: int | None) -> Any:
    """``run`` with its planned epochs set to ``epochs`` (a change of plan, recorded in its
    config under the run's lock; None or the same number: ``run`` unchanged). Refused
    (GrokError) below the epochs already done. The one place that changes the plan before
    a resume, for the app's ``c`` (:meth:`RunSession.extend`) and ``grok-tui train
    --resume --epochs N``."""
    if epochs is None or epochs == run.config.train.epochs:
        return run
    done = run.epochs_done()
    if epochs < done:
        raise GrokError(f"epochs={epochs} is below the {done} epochs run {run.id} has done: "
                        f"give {done} or more")
    return store.extend_epochs(run, epochs)


class TrainingClient:
    """One training child for ``run_id`` in ``runs_dir``, reported to ``on_line`` (called
    on the reader thread with each decoded JSON object) and to ``on_exit(error)`` once at
    the end (``error``: one line, or None when the child finished or stopped cleanly).

    Lines that are not our JSON (a library printed something) are skipped.
    """

    def __init__(self, runs_dir: str | Path, run_id: str, until_epoch: int | None,
                 on_line: Callable[[dict[str, Any]], None], on_exit: Callable[[str | None], None]) -> None:
        self.cmd = [sys.executable, "-m", "grok_engine.train_process", str(Path(runs_dir).resolve()), run_id]
        if until_epoch is not None:
            self.cmd += ["--until-epoch", str(until_epoch)]
        self._on_line = on_line
        self._on_exit = on_exit
        self._lock = threading.Lock()  # guards _proc and _stop_sent
        self._proc: subprocess.Popen | None = None
        self._stop_sent = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Spawn the child (raises OSError when it cannot) and its reader thread."""
        stderr = tempfile.TemporaryFile("w+")
        try:
            proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=stderr, text=True, bufsize=1)
        except BaseException:
            stderr.close()
            raise
        with self._lock:
            self._proc = proc
            stop_now = self._stop_sent
        if stop_now:  # stop() came before the process existed
            self._write_stop(proc)
        self._thread = threading.Thread(target=self._read, args=(proc, stderr), daemon=True,
                                        name="training-client")
        self._thread.start()

    def stop(self) -> None:
        """Ask the child to stop: it writes a checkpoint, then exits."""
        with self._lock:
            self._stop_sent = True
            proc = self._proc
        if proc is not None:
            self._write_stop(proc)

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop_sent

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the child to exit and its last line to be handled; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @staticmethod
    def _write_stop(proc: subprocess.Popen) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        except (OSError, ValueError, AssertionError):  # it has already exited
            pass

    def _read(self, proc: subprocess.Popen, stderr: Any) -> None:
        error: str | None = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                    msg["event"]
                except (ValueError, TypeError, KeyError):
                    continue
                if msg["event"] == "error":
                    error = str(msg.get("message", "training failed"))
                self._on_line(msg)
            proc.wait()
            if error is None and proc.returncode != 0:
                stderr.seek(0)
                last = (stderr.read().strip().splitlines() or [""])[-1]
                error = f"the training process exited with code {proc.returncode}" + (f": {last}" if last else "")
        finally:
            stderr.close()
            with self._lock:
                self._proc = None
            self._on_exit(error)
