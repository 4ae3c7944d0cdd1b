"""One writer per run: the lock file ``runs/<id>/.lock``, and the clean-up of what killed
writers left behind.

The lock is ``fcntl.flock`` on that file, taken by the process that trains the run (``grok-tui
train``, the app's training process) before it writes anything. The kernel drops it when
the process dies, however it dies, so there is no stale lock to detect and nothing to take
over. The file holds the holder's pid, for the message that refuses a second trainer. A
lock is re-entrant within one process (the trainer extending its own run's epochs takes it
again).

Temporary files are named ``.tmp-<pid>-<name>`` (``grok_engine.atomic``); a SIGKILL
mid-write leaves one. Whoever takes the lock removes them: in the folders only the lock
holder writes (the run folder, ``checkpoints/``, ``resume/``) every one; in ``analysis/``
(the app's studies write their caches there without the lock) those whose pid is dead.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from grok_engine.errors import GrokError, describe_os_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer by convention
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
TMP_RE = re.compile(r"^\.tmp-(\d+)-")
LOCKED_FOLDERS = ("", "checkpoints", "resume")  # written only by the lock holder
SHARED_FOLDERS = ("analysis",)                   # also written by readers (study caches)


class RunLocked(GrokError):
    """Another process trains this run."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process, alive
        return True
    return True


def remove_stale_temps(run_path: Path) -> list[Path]:
    """Delete the temporary files of killed writes (see the module docstring); returns them."""
    removed = []
    for folder, any_pid in [(f, True) for f in LOCKED_FOLDERS] + [(f, False) for f in SHARED_FOLDERS]:
        directory = run_path / folder if folder else run_path
        try:
            entries = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = TMP_RE.match(entry)
            if match and (any_pid or not pid_alive(int(match.group(1)))):
                try:
                    (directory / entry).unlink()
                    removed.append(directory / entry)
                except FileNotFoundError:  # its writer finished meanwhile
                    pass
    return removed


_held: dict[str, "RunLock"] = {}
_held_guard = threading.Lock()


class RunLock:
    """The write lock of the run in ``run_path`` (see the module docstring).

    >>> with RunLock.acquire(run.path, run.id):    # doctest: +SKIP
    ...     trainer.run(callback=run)
    """

    def __init__(self, run_path: Path, run_id: str, fd: int):
        self.path = run_path / LOCK_NAME
        self.run_id = run_id
        self._fd: int | None = fd
        self._count = 1

    @classmethod
    def acquire(cls, run_path: Path, run_id: str) -> "RunLock":
        """Take the lock (or, held by this process already, take it again); then clear the
        temporary files of killed writes. Raises :class:`RunLocked` naming the holder."""
        key = str(Path(run_path).resolve())
        with _held_guard:
            held = _held.get(key)
            if held is not None:
                held._count += 1
                return held
            lock = cls(Path(run_path), run_id, cls._lock_file(Path(run_path), run_id))
            _held[key] = lock
        remove_stale_temps(Path(run_path))
        return lock

    @staticmethod
    def _lock_file(run_path: Path, run_id: str) -> int:
        path = run_path / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise GrokError(f"cannot lock run {run_id}: {path}: {describe_os_error(exc)}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise RunLocked(f"run {run_id} is being trained by {who} (lock {path}): "
                                f"wait for it to finish or stop it") from None
            except OSError:  # a file system without flock (some NFS): no lock, as before
                pass
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def release(self) -> None:
        """Give the lock up (once per acquire); the last release closes the file."""
        with _held_guard:
            self._count -= 1
            if self._count > 0 or self._fd is None:
                return
            _held.pop(str(self.path.parent.resolve()), None)
            fd, self._fd = self._fd, None
        os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def held_elsewhere(run_path: Path) -> bool:
    """Whether another process holds the write lock of the run in ``run_path`` (it trains
    the run). The lock file names the last holder: only when that process is alive is the
    lock tried (shared, non-blocking, given back at once), so a reader never holds it while
    no trainer does, where a trainer starting that instant would find it taken. False when
    there is no lock file, or no flock on this system, or the holder is this process."""
    if fcntl is None:
        return False
    try:
        fd = os.open(Path(run_path) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    pid = _read_pid(fd)
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        os.close(fd)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None

