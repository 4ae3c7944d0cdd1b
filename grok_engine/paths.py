"""Where runs and exports live, and what a run id may be. Light: no torch, no numpy.

    runs folder     --runs-dir, else $GROK_TUI_RUNS_DIR, else ./runs
    a run           <runs folder>/<run id>/  (config.json marks it a run)
    exports         ./exports/<run id>/epoch<E>/ (``grok-tui export``, ``E`` in the app)

Run ids (and sweep ids, which share their namespace) are safe folder names: letters,
digits, '.', '_', '-', starting with a letter or digit, at most RUN_ID_MAX characters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from grok_engine.errors import GrokError

RUNS_DIR_ENV = "GROK_TUI_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
EXPORTS_DIR = Path("exports")  # relative: below the folder the command runs in
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RUN_ID_MAX = 100  # characters; a folder name must stay under NAME_MAX (255 bytes) with room


def default_runs_dir() -> Path:
    """$GROK_TUI_RUNS_DIR, else ./runs."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def resolve_runs_dir(runs_dir: str | os.PathLike | None) -> Path:
    """The runs folder: ``runs_dir`` when given (and not empty), else the default."""
    return Path(runs_dir) if runs_dir else default_runs_dir()


def check_run_id(run_id: str) -> None:
    """Refuse a new run's id that is not a safe, short folder name (GrokError)."""
    from grok_engine.config import short_repr

    if not RUN_ID_RE.match(run_id):
        raise GrokError(f"run id {short_repr(run_id)} is not allowed: letters, digits, '.', '_', "
                        f"'-', starting with a letter or digit")
    if len(run_id) > RUN_ID_MAX:
        raise GrokError(f"run id {run_id[:20]!r}... has {len(run_id)} characters: allowed at most "
                        f"{RUN_ID_MAX}")


def is_child_name(name: str) -> bool:
    """A name that can only mean a folder directly inside the runs folder (no traversal)."""
    seps = {"/", "\0", os.sep, os.altsep or "/"}
    return bool(name) and name not in (".", "..") and not any(c in name for c in seps)


def export_folder(run_id: str, epoch: int) -> Path:
    """Where the studies of ``run_id``'s checkpoint ``epoch`` are exported by default."""
    return EXPORTS_DIR / run_id / f"epoch{epoch}"


def export_file(run_id: str, file_name: str) -> Path:
    """Where one exported file of ``run_id`` goes by default (the app's ``e``)."""
    return EXPORTS_DIR / run_id / file_name
