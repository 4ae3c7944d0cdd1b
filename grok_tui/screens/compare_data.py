"""What the comparison screen shows of each run, read in two phases, and its tables.

Phase 1 (:func:`read_compared`, milliseconds a run): the run's config, its metrics and the
figures they give, and the progress measures only if the progress study's cache already
has them (``run_figures(run, compute=False)``): enough to draw the loss and accuracy
overlay and the table at once. Phase 2 (:func:`complete_compared`, seconds a run at
p=113 when the cache lacks its checkpoints): the progress measures computed by the
progress study (which caches them beside the run, so the next comparison is warm), the
figures they give (key frequencies, final restricted and excluded loss, weight norm) and
the grokking phase ends they define (:func:`grok_engine.studies.curves.find_phases`).

A run is *pending* from phase 1 until phase 2 is done with it; its cells that phase 2
fills show :data:`PENDING` on screen ("pending" in CSV), distinct from "-" (a value the
run does not have: no key frequencies for a non-cyclic task, a phase not reached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from grok_engine.results import Table

PENDING = "…"  # a cell phase 2 has still to fill, on screen
PENDING_CSV = "pending"  # the same in an exported CSV (a word a reader of the file cannot miss)
METRIC_NAMES = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
PHASE_ENDS = ("memorization_end", "circuit_formation_end", "cleanup_end")
FIGURE_ROWS = (("phase", "phase"), ("train 99%", "train_99"), ("test 99%", "test_99"), ("delay", "delay"),
               ("memorization end", "memorization_end"), ("circuit formation end", "circuit_formation_end"),
               ("cleanup end", "cleanup_end"),
               ("train acc", "train_acc"), ("test acc", "test_acc"), ("key freqs", "key_frequencies"),
               ("restricted loss", "restricted_loss"), ("excluded loss", "excluded_loss"),
               ("weight norm", "weight_norm"), ("epochs", "epochs_done"), ("status", "status"))
# the rows phase 2 fills (the progress measures' figures and phase ends)
PROGRESS_ROWS = frozenset({*PHASE_ENDS, "key_frequencies", "restricted_loss", "excluded_loss", "weight_norm"})


@dataclass(frozen=True)
class ComparedRun:
    """What the screen shows of one run: its curves (``metrics``: METRIC_NAMES -> [n]
    arrays), its figures (RunFigures), its progress measures (RunProgress; None: not known)
    and the phase ends they give (PHASE_ENDS -> epoch or None; None: not computed).
    ``pending``: phase 2 has still to run for it; ``error``: why phase 2 found nothing."""

    run_id: str
    metrics: dict[str, np.ndarray]
    figures: Any
    progress: Any = None
    phase_ends: dict[str, int | None] | None = None
    pending: bool = False
    error: str = ""

    @property
    def measures(self) -> dict[str, np.ndarray] | None:
        """The progress study's table "measures" as columns (epoch, then one per measure)."""
        return None if self.progress is None else self.progress.measures

    def cell(self, attr: str) -> Any:
        """The raw value of FIGURE_ROWS' ``attr`` (None or NaN: not known)."""
        if attr in PHASE_ENDS:
            return None if self.phase_ends is None else self.phase_ends[attr]
        return getattr(self.figures, attr)


def read_compared(store: Any, run_id: str) -> ComparedRun:
    """Phase 1 for ``run_id``: nothing is computed (module docstring). Raises GrokError
    when the run cannot be opened."""
    from grok_engine.sweep.summary import run_figures, run_progress

    run = store.open(run_id)
    progress = run_progress(run, compute=False)
    figures = run_figures(run, compute=False, progress=progress)
    try:
        metrics = run.metrics().truncate(run.epochs_done()).as_dict()
    except Exception:  # noqa: BLE001 - its figures say why (status unreadable)
        metrics = {k: np.zeros(0) for k in METRIC_NAMES}
    pending = figures.status not in ("unreadable", "not started") and bool(run.checkpoint_epochs())
    return ComparedRun(run_id, metrics, figures, progress, pending=pending)


def complete_compared(store: Any, compared: ComparedRun, progress_callback: Callable[[int, int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> ComparedRun:
    """Phase 2 for ``compared`` (from :func:`read_compared`): the run's progress measures
    (computed and cached where the cache lacks them; ``progress_callback(done, to_do,
    epoch)`` after each checkpoint), their figures and phase ends; not pending any more.
    Raises ProgressStopped when ``should_stop()`` says so between two checkpoints (those
    computed are cached); a run whose measures cannot be computed comes back with
    ``error`` set."""
    from grok_engine.errors import GrokError
    from grok_engine.studies.curves import find_phases
    from grok_engine.sweep.summary import run_figures, run_progress

    progress, figures = compared.progress, compared.figures
    try:
        if progress is None:
            run = store.open(compared.run_id)
            progress = run_progress(run, compute=True, progress_callback=progress_callback,
                                    should_stop=should_stop)
            figures = run_figures(run, compute=False, progress=progress)
        phase_ends = find_phases(compared.metrics, progress.measures).as_dict()
    except GrokError as exc:
        return replace(compared, pending=False, error=str(exc))
    return replace(compared, figures=figures, progress=progress, phase_ends=phase_ends, pending=False)


def comparison_table(runs: Sequence[ComparedRun], pending_mark: str = PENDING) -> Table:
    """A column per run (named by its id), a row per figure: the differing config flags
    first, then FIGURE_ROWS. Raw values (CSV); key frequencies as "1 2 3" ("none" when none stands
    out: :func:`~grok_engine.sweep.summary.format_key_frequencies`); "-" where the
    run has no value; ``pending_mark`` where phase 2 has still to fill it."""
    from grok_engine.sweep.summary import differing_flags, format_key_frequencies

    flags = differing_flags([r.figures for r in runs])
    names = flags + [label for label, _ in FIGURE_ROWS]
    columns: dict[str, list[Any]] = {"field": names}
    for r in runs:
        cells = [r.figures.config.get(flag) for flag in flags]
        for _label, attr in FIGURE_ROWS:
            value = r.cell(attr)
            if r.pending and attr in PROGRESS_ROWS and _missing(value):
                value = pending_mark
            elif attr == "key_frequencies":
                value = format_key_frequencies(value)
            cells.append("-" if value is None else value)
        columns[_unique(r.run_id, columns)] = cells
    return Table("compare", columns, title="Runs compared")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _unique(name: str, taken: dict[str, Any]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name} ({n})"
    return out


def curves_table(runs: Sequence[ComparedRun]) -> Table:
    """Every run's four curves on the union of their epochs (NaN where a run has none):
    columns epoch, then ``<run>:train_loss`` ... per run."""
    epochs = np.unique(np.concatenate([np.asarray(r.metrics["epoch"], dtype=np.int64) for r in runs]))
    columns: dict[str, Any] = {"epoch": epochs}
    for r in runs:
        where = np.searchsorted(epochs, np.asarray(r.metrics["epoch"], dtype=np.int64))
        for name in METRIC_NAMES[1:]:
            col = np.full(len(epochs), np.nan)
            col[where] = r.metrics[name]
            columns[f"{r.run_id}:{name}"] = col
    return Table("compare_curves", columns, title="Curves of the runs compared")
