"""One row of figures per run: what ``grok-tui sweep show``, the sweep screen's members
table and the comparison screen's table show.

A row (:class:`RunFigures`) holds the run's grid values when it is a sweep member (its
config.json's ``"sweep": {"id", "values"}``), its status, its phase with the 99% epochs and
the grokking delay (:mod:`grok_engine.sweep.phases`), the final accuracies and losses,
and, from the progress study (:func:`grok_engine.studies.progress.progress_measures`, read
from its cache beside the run when there is one: :func:`run_progress`), the weight norm
(sum of squared weights) of the last checkpoint; for the cyclic tasks (mod_add, mod_sub)
also the key frequencies and the final restricted and excluded loss.

With ``compute=False`` nothing is computed: the progress figures are None / NaN unless
the cache has them (a read of the run's config, metrics and that cache: what the sweep
screen and the comparison's first paint can afford). With ``compute=True`` the progress
measures the cache lacks are computed (seconds per run at p=113) and cached. A caller that
shows the cheap figures first and the progress ones later (the comparison screen) calls
``run_figures(run, compute=False)``, then :func:`run_progress` with ``compute=True`` and
``run_figures(run, progress=...)`` with what it returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from grok_engine.errors import GrokError
from grok_engine.results import Table
from grok_engine.sweep.phases import find_member_phase

if TYPE_CHECKING:  # pragma: no cover
    from grok_engine.store import Run

CYCLIC_TASKS = ("mod_add", "mod_sub")  # grok_engine.studies.fourier.PERIODIC_TASKS (no torch import here)
STATUSES = ("done", "partial", "diverged", "not started", "unreadable")
NAN = float("nan")


@dataclass
class RunFigures:
    """The figures of one run (None / NaN where not known)."""

    run_id: str
    sweep_id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # grid flag -> value
    config: dict[str, Any] = field(default_factory=dict)  # flag name -> value, every field
    status: str = "not started"
    epochs_done: int = 0
    epochs_planned: int = 0
    phase: str | None = None
    phase_final: bool = False
    train_99: int | None = None
    test_99: int | None = None
    delay: int | None = None
    train_acc: float = NAN
    test_acc: float = NAN
    train_loss: float = NAN
    test_loss: float = NAN
    weight_norm: float = NAN  # sum of squared weights of the last checkpoint
    key_frequencies: list[int] | None = None
    restricted_loss: float = NAN
    excluded_loss: float = NAN
    error: str | None = None

    def row(self, grid_flags: Sequence[str] = ()) -> dict[str, Any]:
        """Flat cells: id, the given grid flags' values, then the figures."""
        keys = self.key_frequencies
        return {"run": self.run_id, **{flag: self.values.get(flag, self.config.get(flag)) for flag in grid_flags},
                "status": self.status, "epochs": self.epochs_done, "phase": self.phase or "-",
                "train_99": _int_or_nan(self.train_99), "test_99": _int_or_nan(self.test_99),
                "delay": _int_or_nan(self.delay), "train_acc": self.train_acc, "test_acc": self.test_acc,
                "weight_norm": self.weight_norm,
                "key_frequencies": format_key_frequencies(keys),
                "restricted_loss": self.restricted_loss, "excluded_loss": self.excluded_loss}


def format_key_frequencies(keys: list[int] | None) -> str:
    """"7 9 24 36"; "none" when no frequency stands out (the figures' []); "-" when not
    known (None: a task that is not cyclic, or no progress measures)."""
    if keys is None:
        return "-"
    return " ".join(map(str, keys)) if keys else "none"


def _int_or_nan(value: int | None) -> float | int:
    return NAN if value is None else value


def flag_name(field_name: str) -> str:
    """A config field as the train CLI's flag without dashes: frac_train -> frac-train."""
    return field_name.replace("_", "-")


def config_flags(run: "Run") -> dict[str, Any]:
    """Every config field of ``run`` under its flag name (task, p, frac-train, lr, ...)."""
    return {flag_name(k): v for section in run.config.to_dict().values() for k, v in section.items()}


def run_status(run: "Run", epochs_done: int) -> str:
    """done / diverged / partial / not started (the sweep contract's member statuses)."""
    if run.diverged() is not None:
        return "diverged"
    if epochs_done >= run.config.train.epochs:
        return "done"
    return "partial" if epochs_done > 0 else "not started"


def _last(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else NAN


@dataclass
class RunProgress:
    """What the progress study gives a run's figures: its table "measures" as columns
    (``epoch`` [c], then one [c] column per measure, c checkpoints) and the final
    checkpoint's key frequencies."""

    measures: dict[str, np.ndarray]
    key_frequencies: list[int]


def run_progress(run: "Run", compute: bool, progress_callback: Any = None,
                 should_stop: Any = None) -> RunProgress | None:
    """The progress measures of ``run`` from the progress study's cache; when the cache
    lacks some checkpoint and ``compute``, computed by
    :func:`grok_engine.studies.progress.progress_measures` (which caches them, computing
    only the checkpoints the cache lacks; ``progress_callback`` and ``should_stop`` are
    passed on to it: it raises ProgressStopped when told to stop); else None. Raises
    GrokError when they cannot be computed (no checkpoint readable)."""
    from grok_engine.studies.progress import cached_progress, progress_measures

    cached = cached_progress(run)
    if cached is not None:
        return RunProgress(*cached)
    if not compute:
        return None
    result = progress_measures(run, progress_callback=progress_callback, should_stop=should_stop)
    return RunProgress(result.tables["measures"].columns, list(result.scalars["key_frequencies"]))


def _progress_figures(run: "Run", progress: RunProgress) -> dict[str, Any]:
    """weight_norm and, for a cyclic task, key_frequencies, restricted_loss,
    excluded_loss of the last checkpoint."""
    last = {name: float(np.asarray(values)[-1]) for name, values in progress.measures.items()}
    out: dict[str, Any] = {"weight_norm": last["sum_sq_weights"]}
    if run.config.task.task in CYCLIC_TASKS:
        # The progress measures restrict to every frequency when none stands out
        # (fourier_basis.key_frequencies; find_key_frequencies never names them all): a
        # run's figures say none, so a memorising run does not read as using them all.
        from grok_engine.fourier_basis import n_frequencies  # torch: not at import

        keys = [int(k) for k in progress.key_frequencies]
        every = len(keys) == n_frequencies(run.config.task.p)
        out.update(key_frequencies=[] if every else keys,
                   restricted_loss=last["restricted_loss"], excluded_loss=last["excluded_loss"])
    return out


def run_figures(run: "Run", compute: bool = True, progress: RunProgress | None = None) -> RunFigures:
    """The figures of ``run`` (module docstring). ``progress``: the run's progress
    measures when the caller has them (:func:`run_progress`); else they are read from the
    cache, or computed there when ``compute``. Never raises for a bad run: its row has
    status "unreadable" and ``error`` says why."""
    sweep = run.info.get("sweep") if isinstance(run.info.get("sweep"), dict) else {}
    values = sweep.get("values") if isinstance(sweep.get("values"), dict) else {}
    fig = RunFigures(run.id, sweep.get("id"), dict(values), config_flags(run),
                     epochs_planned=run.config.train.epochs)
    try:
        done = run.epochs_done()
        metrics = run.metrics().truncate(done) if done else None
        fig.epochs_done, fig.status = done, run_status(run, done)
        if metrics is None or not len(metrics):
            return fig
        ph = find_member_phase(metrics, run.config.train.epochs)
        fig.phase, fig.phase_final = ph.phase, ph.final
        fig.train_99, fig.test_99, fig.delay = ph.train_99, ph.test_99, ph.delay
        fig.train_acc, fig.test_acc = _last(metrics.train_acc), _last(metrics.test_acc)
        fig.train_loss, fig.test_loss = _last(metrics.train_loss), _last(metrics.test_loss)
        progress = progress if progress is not None else run_progress(run, compute)
        for name, value in (_progress_figures(run, progress) if progress else {}).items():
            setattr(fig, name, value)
    except GrokError as exc:
        fig.status, fig.error = "unreadable", str(exc)
    return fig


def figures_table(figures: Sequence[RunFigures], grid_flags: Sequence[str] = (),
                  name: str = "members") -> Table:
    """One row per run (:meth:`RunFigures.row`) as a results Table (what the TUI shows and
    CSV export writes)."""
    rows = [f.row(grid_flags) for f in figures]
    columns = list(rows[0]) if rows else list(RunFigures("").row(grid_flags))
    return Table(name, {c: [r[c] for r in rows] for c in columns}, title="Figures per run")


def differing_flags(figures: Sequence[RunFigures]) -> list[str]:
    """The config flags whose values are not the same in every run, in config order
    (``device`` left out: where a run trained is not what it is)."""
    if not figures:
        return []
    flags = [f for f in figures[0].config if f != "device"]
    for fig in figures[1:]:
        flags += [f for f in fig.config if f not in flags and f != "device"]
    return [f for f in flags if len({_key(fig.config.get(f)) for fig in figures}) > 1]


def _key(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(value)


def sweep_figures(store: Any, sweep: Any, compute: bool) -> list[Any]:
    """RunFigures of every member of ``sweep`` (a grok_engine.sweep.store.Sweep; ``store``
    its RunStore), in members order (a member without a run folder yet:
    its grid values and status "not started")."""
    out = []
    for member in sweep.members:
        try:
            fig = run_figures(store.open(member["run_id"]), compute=compute)
        except GrokError as exc:
            missing = not (store.root / member["run_id"]).exists()
            fig = RunFigures(member["run_id"], sweep.id, status="not started" if missing else "unreadable",
                             error=None if missing else str(exc))
        fig.values = dict(member["values"])
        out.append(fig)
    return out
