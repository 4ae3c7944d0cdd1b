"""The one atomic writer: a file is either its old self or its new self, never half-written.

Every file grok-tui writes (run configs, checkpoints, metrics, CSV exports) goes through
:func:`atomic_write`: write to ``.tmp-<pid>-<name>`` beside the target, fsync, rename over
it. A SIGKILL mid-write leaves only a temp file, which the run lock clears
(``grok_engine.run_lock``). Light: no torch.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

TMP_PREFIX = ".tmp-"

_umask: int | None = None
_umask_guard = threading.Lock()


def process_umask() -> int:
    """This process's umask, read once without changing it where Linux tells it
    (``/proc/self/status``); elsewhere set and restored once, under a lock."""
    global _umask
    with _umask_guard:
        if _umask is None:
            try:
                with open("/proc/self/status") as fh:
                    _umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
            except (OSError, StopIteration, ValueError, IndexError):
                _umask = os.umask(0o022)
                os.umask(_umask)
        return _umask


def temp_path(path: Path) -> Path:
    """The temp file beside ``path`` that :func:`atomic_write` writes first."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path`` (same folder, parents
    created). The file gets the mode a plain ``open`` would give it (0o666 less the
    umask): safetensors creates its files 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~process_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8, newlines as given (a CSV's ``\\n`` stays ``\\n`` on every platform)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))
