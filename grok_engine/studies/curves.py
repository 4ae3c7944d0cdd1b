"""Training curves and the grokking phases read off them.

The notebook plots train and test loss and names the phases from epochs typed in by hand.
Here :func:`find_phases` finds them, one after the other, as Nanda et al. define them
("Progress measures for grokking via mechanistic interpretability", 2023, section 5):
**memorization** (the train set is fitted), **circuit formation** (the Fourier circuit
forms: restricted loss falls and excluded loss rises while test loss stays high) and
**cleanup** (weight decay removes the memorising parts: test loss and the weight norm fall
sharply; the jump in test accuracy happens here). After cleanup the run is "generalized".

**From the progress measures** (the progress study's measures of every checkpoint, when
its cache covers the run's checkpoints; see :func:`grok_engine.studies.progress.cached_measures`),
with the loss curves. Every quantity is read as log10 of its value, smoothed by a running
median and then a running mean of ``SMOOTH`` (5) samples (a spike of up to two samples
goes, noise shrinks). A quantity's *fall rate* at a sample is the fall of its running
minimum since an anchor (so a spike up and back, a slingshot, is never a fall) from two
samples before to two after, per epoch. Its *steep stretch* is the contiguous run of
samples around its steepest fall where it falls at least ``STEEP_FRACTION`` (20%) of that
peak rate.

1. Cleanup starts (circuit formation ends) where the test loss's steep stretch starts.
   The anchor is the highest test loss after the train set is fitted (train accuracy >=
   ``acc_threshold``) and before the test loss first lies ``MIN_CLIFF_DECADES`` (1
   decade) below its highest so far; without such a fall there is no cleanup yet.
2. Memorization ends at the first epoch with train accuracy >= ``acc_threshold`` from
   which the train loss has converged: it stays within ``CONVERGED_FRACTION`` (10%) of its
   whole fall (first epoch to lowest) of the lowest value it reaches before cleanup (before
   the run's end, while there is no cleanup). It is never after cleanup's start.
3. Cleanup ends at the later of the ends of the steep stretches of the test loss and of the
   weight norm (``sum_sq_weights``, its running minimum from cleanup's start; it counts
   when it falls at least ``MIN_WEIGHT_FALL`` (1%) in its stretch). A stretch that reaches
   the last sample has not ended: cleanup is then not over.

Circuit formation is the span between: the table "phases" gives each phase's change of the
test, restricted and excluded loss and of the weight norm (log10 of end over start), so
the signature can be read off it. Relative thresholds throughout: no rule depends on the
loss's scale, the run's length or the spacing of its checkpoints (dense checkpoints
around the transition only sharpen the weight norm's stretch).

**Without progress measures** (no cache yet, or ``use_progress=False``) the phases fall
back on accuracy: memorization ends at the first epoch with train accuracy >=
``acc_threshold``; circuit formation at the first evaluated epoch after it at which test
accuracy has come ``ACC_RISE_FRACTION`` (10%) of the way from its value then to 1; cleanup
at the first evaluated epoch e from test accuracy >= ``acc_threshold`` on after which the
test loss never again falls more than ``cleanup_decades`` below its value at e, seen for
at least ``min_plateau_frac`` of the run after e.

Epochs with a NaN test entry (``eval_every > 1``) are skipped. A phase not reached is
``None``. While a run trains, its phases may still move.
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
STEEP_FRACTION = 0.2
SMOOTH = 5  # samples: a running median then a running mean of this width, on log10
MIN_CLIFF_DECADES = 1.0
CONVERGED_FRACTION = 0.1
MIN_WEIGHT_FALL = float(-np.log10(0.99))  # 1% of the weight norm, in decades
ACC_RISE_FRACTION = 0.1
SOURCE_PROGRESS = "progress measures"
SOURCE_ACCURACY = "accuracy (no progress measures yet)"
# measure -> where it is read: the curves (every evaluated epoch) or the progress measures
CHANGE_COLUMNS = {"test_loss": "curves", "restricted_loss": "progress", "excluded_loss": "progress",
                  "sum_sq_weights": "progress"}


def _progress_rules(acc_threshold: float) -> dict[str, str]:
    steep = f"{STEEP_FRACTION:.0%} of its peak rate"
    return {
        "memorization": (f"until train accuracy >= {acc_threshold:g} and train loss has converged "
                         f"(within {CONVERGED_FRACTION:.0%} of its log fall of the lowest it reaches "
                         f"before cleanup)"),
        "circuit_formation": (f"restricted loss falls, excluded loss rises, test loss still high: until "
                              f"test loss starts its steep fall (log10 falling >= {steep})"),
        "cleanup": (f"test loss and weight norm (sum of squared weights) fall steeply; ends when both "
                    f"fall at < {steep}"),
    }


def _accuracy_rules(acc_threshold: float, cleanup_decades: float, min_plateau_frac: float) -> dict[str, str]:
    return {
        "memorization": f"until train accuracy >= {acc_threshold:g}",
        "circuit_formation": (f"until test accuracy has risen {ACC_RISE_FRACTION:.0%} of the way from "
                              f"its value then to 1"),
        "cleanup": (f"from test accuracy >= {acc_threshold:g} until test loss stays within "
                    f"{cleanup_decades:g} decades of its lowest (seen for >= {min_plateau_frac:.0%} "
                    f"of the run)"),
    }


@dataclass(frozen=True)
class Phases:
    """Last epoch of each phase (None: not reached), the one-line definition of each and
    where they come from (SOURCE_PROGRESS or SOURCE_ACCURACY)."""

    memorization_end: int | None
    circuit_formation_end: int | None
    cleanup_end: int | None
    rules: dict[str, str]
    source: str = SOURCE_ACCURACY

    def as_dict(self) -> dict[str, int | None]:
        return {f"{name}_end": getattr(self, f"{name}_end") for name in PHASES}

    def spans(self) -> list[tuple[str, int | None, int | None]]:
        """(phase, start epoch, end epoch): each phase starts where the one before ended
        (memorization at 0); None where that is not reached."""
        out, start = [], 0
        for name in PHASES:
            end = getattr(self, f"{name}_end") if start is not None else None
            out.append((name, start, end))
            start = end
        return out

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


def _first_epoch(epoch: np.ndarray, mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(epoch[hits[0]]) if len(hits) else None


# -- the progress-measure rule ------------------------------------------------------------
def _running(y: np.ndarray, width: int, reduce) -> np.ndarray:
    """``reduce`` (np.median or np.mean) over a centred window of ``width`` samples; the
    window shrinks at the ends."""
    if len(y) < 3:
        return y.copy()
    half = width // 2
    pad = np.pad(y, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, width)
    return reduce(windows, axis=-1)


def _log_series(epoch: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples with a finite positive value: (epochs [k], log10 values [k] smoothed by
    a running median then a running mean of SMOOTH samples)."""
    ok = np.isfinite(values) & (values > 0)
    e, y = epoch[ok], np.log10(values[ok])
    return e, _running(_running(y, SMOOTH, np.median), SMOOTH, np.mean)


def _fall_rates(e: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fall rate (decades per epoch) of y's running minimum at each sample, over the
    SMOOTH // 2 samples on each side (fewer at the ends). e, y: [k] -> [k]."""
    m = np.minimum.accumulate(y)
    if len(m) < 2:
        return np.zeros(len(m))
    i = np.arange(len(m))
    half = SMOOTH // 2
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half, len(m) - 1)
    return (m[lo] - m[hi]) / (e[hi] - e[lo])


def _steep_stretch(e: np.ndarray, y: np.ndarray) -> tuple[int, int, float] | None:
    """The steep stretch of y (module docstring): (first index, last index, fall in decades
    of the running minimum across it); None when y never falls."""
    r = _fall_rates(e, y)
    if not len(r) or r.max() <= 0:
        return None
    peak = int(np.argmax(r))
    steep = r >= STEEP_FRACTION * r[peak]
    first, last = peak, peak
    while first > 0 and steep[first - 1]:
        first -= 1
    while last < len(r) - 1 and steep[last + 1]:
        last += 1
    m = np.minimum.accumulate(y)
    return first, last, float(m[max(first - 1, 0)] - m[min(last + 1, len(m) - 1)])


def _test_loss_cliff(e: np.ndarray, y: np.ndarray, fit: int) -> tuple[int, int, bool] | None:
    """(start, end, ended) of the test loss's steep fall after the train set is fitted
    (rule 1); None before it has fallen MIN_CLIFF_DECADES below its highest. e, y: the
    log series of the test loss."""
    after = np.flatnonzero(e >= fit)
    if len(after) < 2:
        return None
    i0 = int(after[0])
    below = np.flatnonzero(y[i0:] <= np.maximum.accumulate(y[i0:]) - MIN_CLIFF_DECADES)
    if not len(below):
        return None
    anchor = i0 + int(np.argmax(y[i0:i0 + below[0] + 1]))
    stretch = _steep_stretch(e[anchor:], y[anchor:])
    if stretch is None:  # pragma: no cover - a fall of a decade has a steepest point
        return None
    first, last, _ = stretch
    return int(e[anchor + first]), int(e[anchor + last]), anchor + last < len(e) - 1


def _converged(e: np.ndarray, y: np.ndarray, fit: int, until: int) -> int:
    """Rule 2: the first epoch >= ``fit`` from which the train loss (log series e, y) stays
    within CONVERGED_FRACTION of its fall of the lowest it reaches up to ``until``."""
    keep = e <= max(until, fit)
    e, y = e[keep], y[keep]
    if not len(y):
        return fit
    still_to_come = np.minimum.accumulate(y[::-1])[::-1]
    fall = y[0] - still_to_come[0]
    ok = np.flatnonzero((y - still_to_come <= CONVERGED_FRACTION * max(fall, 0.0)) & (e >= fit))
    return max(fit, int(e[ok[0]])) if len(ok) else fit


def _weight_norm_end(measures: dict[str, np.ndarray], start: int) -> tuple[int | None, bool]:
    """Rule 3's weight-norm part: (end of its steep stretch from ``start`` on, ended).
    (None, True) when it does not fall by MIN_WEIGHT_FALL there (it puts no end)."""
    e, y = _log_series(np.asarray(measures["epoch"], np.float64),
                       np.asarray(measures["sum_sq_weights"], np.float64))
    keep = e >= start
    e, y = e[keep], y[keep]
    stretch = _steep_stretch(e, y) if len(e) >= 2 else None
    if stretch is None or stretch[2] < MIN_WEIGHT_FALL:
        return None, True
    return int(e[stretch[1]]), stretch[1] < len(e) - 1


def _progress_phases(epoch, train_loss, test_loss, fit: int, measures) -> tuple[int, int | None, int | None]:
    """(memorization end, circuit formation end, cleanup end) by rules 1-3."""
    te, ty = _log_series(epoch, test_loss)
    cliff = _test_loss_cliff(te, ty, fit)
    tre, try_ = _log_series(epoch, train_loss)
    until = cliff[0] if cliff is not None else int(epoch[-1])
    memorization_end = min(_converged(tre, try_, fit, until), until)
    if cliff is None:
        return memorization_end, None, None
    start, test_end, test_ended = cliff
    weight_end, weight_ended = _weight_norm_end(measures, start)
    cleanup_end = max(test_end, weight_end if weight_end is not None else test_end)
    return memorization_end, start, cleanup_end if test_ended and weight_ended else None


# -- the accuracy fallback ----------------------------------------------------------------
def _accuracy_phases(epoch, test_loss, train_acc, test_acc, acc_threshold, cleanup_decades,
                     min_plateau_frac) -> tuple[int | None, int | None, int | None]:
    memorization_end = _first_epoch(epoch, np.nan_to_num(train_acc, nan=0.0) >= acc_threshold)
    if memorization_end is None:
        return None, None, None
    evaluated = np.isfinite(test_acc)
    then = test_acc[evaluated & (epoch <= memorization_end)]
    acc_then = float(then[-1]) if len(then) else 0.0
    rise = acc_then + ACC_RISE_FRACTION * (1.0 - acc_then)
    circuit_end = _first_epoch(epoch, evaluated & (epoch > memorization_end)
                               & (np.nan_to_num(test_acc) >= rise))
    grokked = _first_epoch(epoch, np.nan_to_num(test_acc, nan=0.0) >= acc_threshold)
    if circuit_end is None or grokked is None:
        return memorization_end, circuit_end, None
    keep = (epoch >= max(grokked, circuit_end)) & np.isfinite(test_loss)
    e = epoch[keep]
    log_loss = np.log10(np.maximum(test_loss[keep], 1e-300))  # a loss of exactly 0 stays finite
    still_to_come = np.minimum.accumulate(log_loss[::-1])[::-1]
    settled = np.flatnonzero(log_loss - still_to_come <= cleanup_decades)
    cleanup_end = None
    if len(settled):
        candidate = int(e[settled[0]])
        if epoch[-1] - candidate >= min_plateau_frac * epoch[-1]:
            cleanup_end = candidate
    return memorization_end, circuit_end, cleanup_end


def find_phases(metrics: Any, measures: dict[str, Any] | None = None, acc_threshold: float = 0.99,
                cleanup_decades: float = 0.5, min_plateau_frac: float = 0.05) -> Phases:
    """The grokking phases of a run (rules in the module docstring).

    ``metrics``: a :class:`grok_engine.train.Metrics` or a dict with arrays ``epoch`` [n]
    (ascending), ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` [n] (NaN = not
    evaluated). ``measures``: the progress study's table "measures" as columns (``epoch``
    [c], ``sum_sq_weights`` [c], ...), or None for the accuracy fallback.

    >>> import numpy as np
    >>> e = np.arange(1, 11)
    >>> m = {"epoch": e, "train_loss": np.ones(10), "train_acc": np.minimum(1, e / 3),
    ...      "test_acc": (e >= 6) * 1.0, "test_loss": np.array([5, 5, 5, 5, 5, 1e-2, 1e-4, 1e-6, 1e-6, 1e-6])}
    >>> find_phases(m).as_dict()
    {'memorization_end': 3, 'circuit_formation_end': 6, 'cleanup_end': 8}
    """
    epoch = _column(metrics, "epoch")
    train_acc, test_acc = _column(metrics, "train_acc"), _column(metrics, "test_acc")
    test_loss = _column(metrics, "test_loss")
    fit = _first_epoch(epoch, np.nan_to_num(train_acc, nan=0.0) >= acc_threshold)
    if measures is not None and "sum_sq_weights" in measures:
        rules = _progress_rules(acc_threshold)
        if fit is None:
            return Phases(None, None, None, rules, SOURCE_PROGRESS)
        ends = _progress_phases(epoch, _column(metrics, "train_loss"), test_loss, fit, measures)
        return Phases(*ends, rules, SOURCE_PROGRESS)
    ends = _accuracy_phases(epoch, test_loss, train_acc, test_acc, acc_threshold, cleanup_decades,
                            min_plateau_frac)
    return Phases(*ends, _accuracy_rules(acc_threshold, cleanup_decades, min_plateau_frac), SOURCE_ACCURACY)


def phase_changes(phases: Phases, metrics: Any, measures: dict[str, Any] | None) -> dict[str, list[float]]:
    """For each of CHANGE_COLUMNS, its change over each phase: log10(value at the end /
    value at the start), read by linear interpolation of log10 between samples; NaN where a
    bound is not reached or the measure is not there. -> name -> [len(PHASES)] floats."""
    sources = {"curves": metrics, "progress": measures}
    out: dict[str, list[float]] = {}
    for name, where in CHANGE_COLUMNS.items():
        table = sources[where]
        values = []
        for _, start, end in phases.spans():
            if table is None or start is None or end is None:
                values.append(float("nan"))
                continue
            e, y = _column(table, "epoch"), _column(table, name)
            ok = np.isfinite(y) & (y > 0)
            if not ok.any():
                values.append(float("nan"))
                continue
            at = np.interp([start, end], e[ok], np.log10(y[ok]))
            values.append(float(at[1] - at[0]))
        out[name] = values
    return out


def _value_at(epochs: np.ndarray, values: np.ndarray, epoch: int) -> float:
    """The last non-NaN value at or before ``epoch`` (NaN if none)."""
    ok = (epochs <= epoch) & ~np.isnan(values)
    idx = np.flatnonzero(ok)
    return float(values[idx[-1]]) if len(idx) else float("nan")


def _check_options(acc_threshold, cleanup_decades, min_plateau_frac, use_progress) -> None:
    for name, value, low, high in (("acc_threshold", acc_threshold, 0.0, 1.0),
                                   ("cleanup_decades", cleanup_decades, 0.0, 100.0),
                                   ("min_plateau_frac", min_plateau_frac, 0.0, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise GrokError(f"{name}={value!r} is out of range: allowed [{low}, {high}]")
    if not isinstance(use_progress, bool):
        raise GrokError(f"use_progress={use_progress!r} is not allowed: true or false")


@register("curves")
def curves(ctx, acc_threshold: float = 0.99, cleanup_decades: float = 0.5,
           min_plateau_frac: float = 0.05, use_progress: bool = True) -> StudyResult:
    """Table "curves" (epoch, train_loss, test_loss, train_acc, test_acc) of the whole run;
    table "phases" (phase, start_epoch, end_epoch, definition, source, then each phase's
    change of test_loss, restricted_loss, excluded_loss, sum_sq_weights in decades) from
    :func:`find_phases`, on the progress measures when the progress study has cached them
    for every checkpoint of the run (it is never computed here: it reads every
    checkpoint) and ``use_progress``, else on accuracy. Without a run (bare weights) both
    tables are there, the curves empty, no phase reached. Scalars: the three phase ends,
    phases_source, the context's epoch, the phase it falls in and the curves' values there
    (the last evaluated ones at or before it)."""
    _check_options(acc_threshold, cleanup_decades, min_plateau_frac, use_progress)
    measures = None
    if ctx.run is not None:
        metrics = ctx.run.metrics().as_dict()
        if use_progress:
            from grok_engine.studies.progress import cached_measures

            measures = cached_measures(ctx.run)
    else:
        metrics = {"epoch": np.zeros(0, np.int64), **{c: np.zeros(0) for c in CURVE_COLUMNS[1:]}}
    phases = find_phases(metrics, measures, acc_threshold, cleanup_decades, min_plateau_frac)

    result = StudyResult("curves", ctx.epoch)
    result.add(Table("curves", {c: np.asarray(metrics[c]) for c in CURVE_COLUMNS},
                     title="Training curves",
                     description="Loss and accuracy per epoch; test values are NaN on epochs "
                                 "that were not evaluated."))
    spans = phases.spans()
    changes = phase_changes(phases, metrics, measures)
    result.add(Table("phases", {
        "phase": list(PHASES),
        "start_epoch": [start for _, start, _ in spans],
        "end_epoch": [end for _, _, end in spans],
        "definition": [phases.rules[name] for name in PHASES],
        "source": [phases.source] * len(PHASES),
        **{f"{name}_decades": values for name, values in changes.items()},
    }, title=f"Grokking phases (Nanda et al. 2023) from {phases.source}",
        description="Each phase runs from the end of the one before to its end_epoch (empty: "
                    "not reached). *_decades: log10(end / start) of that measure over the phase; "
                    "in circuit formation restricted loss falls (< 0) and excluded loss rises."))
    result.scalars.update(phases.as_dict())
    result.scalars["phases_source"] = phases.source
    epochs = np.asarray(metrics["epoch"])
    result.scalars["epoch"] = ctx.epoch
    result.scalars["phase_at_epoch"] = phases.phase_at(ctx.epoch) if len(epochs) else None
    for c in CURVE_COLUMNS[1:]:
        result.scalars[f"{c}_at_epoch"] = _value_at(epochs, np.asarray(metrics[c], np.float64), ctx.epoch)
    return result
