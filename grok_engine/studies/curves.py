"""Training curves and the grokking phases read off them.

The notebook plots train and test loss and names the phases from epochs typed in by hand.
Here :func:`find_phases` finds them from the curves (Nanda et al. 2023 name three:
memorisation, circuit formation, cleanup):

- **memorization** ends at the first epoch with train accuracy >= ``acc_threshold`` (0.99):
  the train set is fitted.
- **circuit formation** ends at the first *evaluated* epoch with test accuracy >=
  ``acc_threshold``: the model generalises (the run list's "grokked at" epoch, same rule).
- **cleanup** ends at the first evaluated epoch e at or after that one from which the test
  loss never again falls more than ``cleanup_decades`` decades (default 0.5, a factor of
  about 3) below its value at e; the run must go on for at least ``min_plateau_frac`` of its
  epochs (default 5%) after e, or the plateau is unseen and the phase counts as not reached.
  Losses after grokking span many decades (1e-1 to 1e-7), hence the log scale. Nanda et al.
  also watch the weight norm stop falling; the curves hold no weight norm, so it is not used.

Epochs with a NaN test entry (``eval_every > 1``) are skipped by the test rules. A phase
not reached is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from grok_engine.errors import GrokError
from grok_engine.results import StudyResult, Table
from grok_engine.studies import register

PHASES = ("memorization", "circuit_formation", "cleanup")
CURVE_COLUMNS = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")


@dataclass(frozen=True)
class Phases:
    """Last epoch of each phase (None: not reached) and the rule that found it."""

    memorization_end: int | None
    circuit_formation_end: int | None
    cleanup_end: int | None
    rules: dict[str, str]

    def as_dict(self) -> dict[str, int | None]:
        return {f"{name}_end": getattr(self, f"{name}_end") for name in PHASES}

    def phase_at(self, epoch: int) -> str:
        """Which phase ``epoch`` falls in: one of PHASES or "generalized" (after cleanup)."""
        for name in PHASES:
            end = getattr(self, f"{name}_end")
            if end is None or epoch <= end:
                return name
        return "generalized"


def _column(metrics: Any, name: str) -> np.ndarray:
    values = metrics[name] if isinstance(metrics, dict) else getattr(metrics, name)
    return np.asarray(values, dtype=np.float64)


def find_phases(metrics: Any, acc_threshold: float = 0.99, cleanup_decades: float = 0.5,
                min_plateau_frac: float = 0.05) -> Phases:
    """The grokking phases of a run's curves (rules in the module docstring).

    ``metrics``: a :class:`grok_engine.train.Metrics` or a dict with arrays ``epoch``
    [n] (ascending), ``train_acc``, ``test_acc``, ``test_loss`` [n] (NaN = not evaluated).

    >>> import numpy as np
    >>> e = np.arange(1, 11)
    >>> m = {"epoch": e, "train_acc": np.minimum(1, e / 3), "test_acc": (e >= 6) * 1.0,
    ...      "test_loss": np.array([5, 5, 5, 5, 5, 1e-2, 1e-4, 1e-6, 1e-6, 1e-6])}
    >>> find_phases(m).as_dict()
    {'memorization_end': 3, 'circuit_formation_end': 6, 'cleanup_end': 8}
    """
    epoch = _column(metrics, "epoch")
    train_acc = _column(metrics, "train_acc")
    test_acc = _column(metrics, "test_acc")
    test_loss = _column(metrics, "test_loss")
    rules = {
        "memorization": f"first epoch with train accuracy >= {acc_threshold}",
        "circuit_formation": f"first evaluated epoch with test accuracy >= {acc_threshold}",
        "cleanup": (f"first epoch from grokking on after which test loss never falls more than "
                    f"{cleanup_decades} decades lower, seen for >= {min_plateau_frac:.0%} of the run"),
    }

    def first(mask: np.ndarray) -> int | None:
        hits = np.flatnonzero(mask)
        return int(epoch[hits[0]]) if len(hits) else None

    memorization_end = first(np.nan_to_num(train_acc, nan=0.0) >= acc_threshold)
    circuit_end = first(np.nan_to_num(test_acc, nan=0.0) >= acc_threshold)
    cleanup_end = None
    if circuit_end is not None:
        keep = (epoch >= circuit_end) & np.isfinite(test_loss)
        e = epoch[keep]
        log_loss = np.log10(np.maximum(test_loss[keep], 1e-300))  # a loss of exactly 0 stays finite
        # suffix minimum: the lowest loss still to come after each evaluated epoch
        still_to_come = np.minimum.accumulate(log_loss[::-1])[::-1]
        settled = np.flatnonzero(log_loss - still_to_come <= cleanup_decades)
        if len(settled):
            candidate = int(e[settled[0]])
            if epoch[-1] - candidate >= min_plateau_frac * epoch[-1]:
                cleanup_end = candidate
    return Phases(memorization_end, circuit_end, cleanup_end, rules)


def _value_at(epochs: np.ndarray, values: np.ndarray, epoch: int) -> float:
    """The last non-NaN value at or before ``epoch`` (NaN if none)."""
    ok = (epochs <= epoch) & ~np.isnan(values)
    idx = np.flatnonzero(ok)
    return float(values[idx[-1]]) if len(idx) else float("nan")


@register("curves")
def curves(ctx, acc_threshold: float = 0.99, cleanup_decades: float = 0.5,
           min_plateau_frac: float = 0.05) -> StudyResult:
    """Table "curves" (epoch, train_loss, test_loss, train_acc, test_acc) of the whole run;
    table "phases" (phase, epoch, rule) from :func:`find_phases`. Without a run (a context
    built from bare weights) both tables are there but the curves are empty and no phase is
    reached. Scalars: the three phase ends, the context's epoch, the phase it falls in and
    the curves' values there (the last evaluated ones at or before it)."""
    for name, value, low, high in (("acc_threshold", acc_threshold, 0.0, 1.0),
                                   ("cleanup_decades", cleanup_decades, 0.0, 100.0),
                                   ("min_plateau_frac", min_plateau_frac, 0.0, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise GrokError(f"{name}={value!r} is out of range: allowed [{low}, {high}]")
    if ctx.run is not None:
        metrics = ctx.run.metrics().as_dict()
    else:
        metrics = {"epoch": np.zeros(0, np.int64), **{c: np.zeros(0) for c in CURVE_COLUMNS[1:]}}
    phases = find_phases(metrics, acc_threshold, cleanup_decades, min_plateau_frac)

    result = StudyResult("curves", ctx.epoch)
    result.add(Table("curves", {c: np.asarray(metrics[c]) for c in CURVE_COLUMNS},
                     title="Training curves",
                     description="Loss and accuracy per epoch; test values are NaN on epochs "
                                 "that were not evaluated."))
    ends = phases.as_dict()
    result.add(Table("phases", {
        "phase": list(PHASES),
        "epoch": [ends[f"{name}_end"] for name in PHASES],
        "rule": [phases.rules[name] for name in PHASES],
    }, title="Grokking phases found from the curves",
        description="Last epoch of each phase; empty when the run has not reached it."))
    result.scalars.update(ends)
    epochs = np.asarray(metrics["epoch"])
    result.scalars["epoch"] = ctx.epoch
    result.scalars["phase_at_epoch"] = phases.phase_at(ctx.epoch) if len(epochs) else None
    for c in CURVE_COLUMNS[1:]:
        result.scalars[f"{c}_at_epoch"] = _value_at(epochs, np.asarray(metrics[c], np.float64), ctx.epoch)
    return result
