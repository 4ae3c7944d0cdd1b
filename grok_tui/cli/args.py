"""What every subcommand shares: the parser that reports one line, exit codes, argument
types, the runs folder and its checks. Light: no torch, no rich (``grok-tui --help``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_DIVERGED = 3  # training stopped on a non-finite loss or weight (bad input is 2)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it (128 + SIGINT)


class UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{self.prog}: {message}")


def fail(message: str) -> int:
    print(f"grok-tui: {message}", file=sys.stderr)
    return EXIT_USAGE


def nonempty(text: str) -> str:
    """An argparse type: any text but the empty string (a path, a run id)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value is not allowed")
    return text


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None


def accuracy(text: str) -> float:
    value = number(text)
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy in (0, 1], e.g. 0.99")
    return value


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=None, type=nonempty,
                        help="folder of runs (default $GROK_TUI_RUNS_DIR or ./runs)")


def runs_folder(runs_dir: str | None, writing: bool = False) -> Path:
    """The runs folder (--runs-dir, $GROK_TUI_RUNS_DIR or ./runs), refused with GrokError when
    it is a file, or, for ``writing``, when a new run cannot be created in it. Nothing is
    created here: a folder that does not exist yet is made with the first run."""
    from grok_engine.errors import GrokError, describe_os_error
    from grok_engine.paths import resolve_runs_dir

    root = resolve_runs_dir(runs_dir)
    name = f"--runs-dir {runs_dir!r}" if runs_dir is not None else f"the runs folder {str(root)!r}"
    existing = root
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent  # the nearest folder that exists: the run goes below it
    try:
        is_dir = existing.is_dir()
    except OSError as exc:
        raise GrokError(f"{name}: {describe_os_error(exc)}") from None
    if not is_dir:
        what = "is a file, not a folder" if existing == root else f"is inside {str(existing)!r}, a file"
        raise GrokError(f"{name} {what}")
    if writing:
        check_writable(existing, f"{name} cannot take a new run")
    return root


def check_writable(folder: Path, what: str) -> None:
    """GrokError "WHAT: read-only file system" or "...: permission denied" unless files can
    be created in ``folder`` (checked before anything is written, not found out midway)."""
    from grok_engine.errors import GrokError

    if _read_only_fs(folder):
        raise GrokError(f"{what}: read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GrokError(f"{what}: permission denied on {str(folder)!r}")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will tell
        return False
