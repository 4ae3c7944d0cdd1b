"""CSV export of study results: the one place that writes tables and grids to disk.

UI-free: the TUI's `e`/`E` keys and ``grok-tui export`` both call these functions.

Layout of the files:

- a :class:`Table` -> a header row of column names, then one row per table row;
- a :class:`Grid` -> a header row ``row_axis\\col_axis, col label, col label, ...`` (for
  example ``a\\b,0,1,2``), then per row its label followed by the values;
- a study's headline scalars -> a table with columns ``name,value``.

File names (:func:`export_file_name`, the same for `e`, `E` and ``grok-tui export``)::

    <study>_<item>_<table|grid>[_<option>-<value>...]_epoch<E>.csv
    <study>_scalars[_<option>-<value>...]_epoch<E>.csv

for example ``ablation_failures_table_keep-1_epoch2000.csv`` beside
``ablation_failures_grid_keep-1_epoch2000.csv``, or ``neurons_pre_grid_neuron-17_epoch2000.csv``.
The kind is always there (a study may hold a table and a grid of one name); the options
are those the item depends on (``Table.options`` / ``Grid.options``: a neuron, the
components kept, the layer; a list is joined with ``+``), in the study's order, so every
file of one export has its own name and the count reported is the count on disk. The
scalars carry every option of the study's items.

Values are raw (full precision, ``nan`` for missing); every file is written to a temporary
file in the target folder and renamed over its name, so a crash never leaves half a CSV.
A path that cannot be written raises :class:`GrokError` naming it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from grok_engine.atomic import atomic_write_text
from grok_engine.errors import GrokError, describe_os_error
from grok_engine.results import Grid, StudyResult, Table

if TYPE_CHECKING:  # pragma: no cover
    from grok_engine.context import Context

__all__ = ["write_csv", "export_result", "export_all", "export_file_name", "csv_rows", "NEEDS_RUN"]

# Studies that read the whole run (metrics, every checkpoint), not just one checkpoint.
NEEDS_RUN = ("curves", "progress")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars so csv writes them at full precision."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def csv_rows(item: Table | Grid) -> list[list[Any]]:
    """The rows a CSV of ``item`` holds, header first.

    >>> csv_rows(Table("t", {"k": [1, 2], "R2": [0.5, 0.25]}))
    [['k', 'R2'], [1, 0.5], [2, 0.25]]
    """
    if isinstance(item, Table):
        return [list(item.column_names), *[[_plain(v) for v in row] for row in item.rows()]]
    if isinstance(item, Grid):
        header = [f"{item.row_axis}\\{item.col_axis}", *[_plain(c) for c in item.col_labels]]
        values = np.asarray(item.values).tolist()
        return [header, *[[_plain(label), *row] for label, row in zip(item.row_labels, values)]]
    raise TypeError(f"cannot export {type(item).__name__}: expected Table or Grid")


def _option_text(value: Any) -> str:
    """An option's value as file-name text: lists joined with '+', anything but letters,
    digits, '.', '+' and '-' replaced by '-'."""
    value = _plain(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        text = "+".join(_option_text(v) for v in value)
    elif isinstance(value, float):
        text = format(value, "g")
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "none"


def _options_suffix(options: dict[str, Any]) -> str:
    return "".join(f"_{name}-{_option_text(value)}" for name, value in options.items())


def export_file_name(study: str, item: Table | Grid | None, epoch: int,
                     options: dict[str, Any] | None = None) -> str:
    """The CSV file name of ``item`` of ``study`` at ``epoch`` (None: the study's scalars,
    with ``options``); the scheme is in the module docstring.

    >>> export_file_name("neurons", Grid("pre", np.zeros((1, 1)), "a", "b", [0], [0],
    ...                  options={"neuron": 17}), 2000)
    'neurons_pre_grid_neuron-17_epoch2000.csv'
    >>> export_file_name("ablation", Table("failures", {"a": []}, options={"keep": (1, 2)}), 5)
    'ablation_failures_table_keep-1+2_epoch5.csv'
    """
    if item is None:
        return f"{study}_scalars{_options_suffix(options or {})}_epoch{epoch}.csv"
    kind = "table" if isinstance(item, Table) else "grid"
    return f"{study}_{item.name}_{kind}{_options_suffix(item.options)}_epoch{epoch}.csv"


def _result_options(result: StudyResult) -> dict[str, Any]:
    """Every option any item of ``result`` depends on, first seen first."""
    options: dict[str, Any] = {}
    for item in result.items():
        for name, value in item.options.items():
            options.setdefault(name, value)
    return options


def _ensure_folder(folder: Path) -> None:
    if os.path.lexists(folder) and not folder.is_dir():
        raise GrokError(f"cannot write into {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GrokError(f"cannot create folder {folder}: {describe_os_error(exc)}") from None


def write_csv(item: Table | Grid, path: str | os.PathLike) -> Path:
    """Write ``item`` to ``path`` (parent folders created); returns the path written."""
    path = Path(path)
    if path.is_dir():
        raise GrokError(f"cannot write {path}: it is a folder, give a file name")
    _ensure_folder(path.parent)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(csv_rows(item))
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        raise GrokError(f"cannot write {path}: {describe_os_error(exc)}") from None
    return path


def export_result(result: StudyResult, folder: str | os.PathLike) -> list[Path]:
    """Every table and grid of ``result`` in ``folder``, plus its headline scalars when it
    has some, named by :func:`export_file_name`. Returns the paths written, one per file."""
    folder = Path(folder)
    _ensure_folder(folder)
    files: list[tuple[str, Table | Grid]] = [
        (export_file_name(result.study, item, result.epoch), item) for item in result.items()]
    if result.scalars:
        scalars = Table("scalars", {"name": list(result.scalars),
                                    "value": [_plain(v) for v in result.scalars.values()]})
        files.append((export_file_name(result.study, None, result.epoch, _result_options(result)), scalars))
    names = [name for name, _ in files]
    if len(set(names)) != len(names):  # two items would overwrite one another
        twice = sorted({n for n in names if names.count(n) > 1})
        raise GrokError(f"study {result.study} names two items alike: {', '.join(twice)}")
    return [write_csv(item, folder / name) for name, item in files]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def export_all(ctx: "Context", folder: str | os.PathLike, studies: Iterable[str] | None = None,
               on_result: Callable[[StudyResult, list[Path]], None] | None = None) -> list[Path]:
    """Run ``studies`` (default: every registered study, in registry order) on ``ctx`` and
    write each with :func:`export_result` into ``folder``.

    When both are written, "progress" is computed before "curves" (whose phases read the
    progress measures it caches); results are still reported in the order of ``studies``.
    Studies in :data:`NEEDS_RUN` read the run's metrics and checkpoints: by default they are
    left out when ``ctx.run`` is None; named explicitly without a run they raise GrokError.
    ``on_result(result, paths)`` is called after each study (the CLI prints its scalars).
    Export writes only into ``folder``: the progress study's cache goes into the run folder
    only when ``folder`` lies inside it (and then best-effort), so a read-only run exports.
    """
    from grok_engine.studies import STUDY_MODULES, run_study

    if studies is None:
        names = [s for s in STUDY_MODULES if ctx.run is not None or s not in NEEDS_RUN]
    else:
        names = list(dict.fromkeys(studies))  # a study named twice is written once
        for name in names:
            if name not in STUDY_MODULES:
                raise GrokError(f"study {name!r} does not exist: choose one of {', '.join(STUDY_MODULES)}")
            if name in NEEDS_RUN and ctx.run is None:
                raise GrokError(f"study {name!r} needs a run (its metrics and checkpoints), "
                                f"not bare weights")
    save_cache = ctx.run is not None and _inside(Path(folder), ctx.run.path)
    options = {"progress": {"save_cache": save_cache}}
    # the progress study first: it caches the measures the curves study's phases read
    early = ({"progress": run_study("progress", ctx, **options["progress"])}
             if {"progress", "curves"} <= set(names) else {})
    written: list[Path] = []
    for name in names:
        result = early.pop(name, None) or run_study(name, ctx, **options.get(name, {}))
        paths = export_result(result, folder)
        written.extend(paths)
        if on_result is not None:
            on_result(result, paths)
    return written
