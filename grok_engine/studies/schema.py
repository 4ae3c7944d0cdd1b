"""What each study returns, declared: its tables (and their columns), grids and scalars,
and its scope. The contract between a study and whoever reads its result.

``run_study`` checks every result against its study's schema (:meth:`StudySchema.check`),
so a study cannot emit a name nobody declared or leave out a required one; panes read
results only through :meth:`StudySchema.view`, which refuses an undeclared name (a typo or
a guess such as a ``start``/``end`` column no study emits is an error, not a blank) and
returns a required name without a fallback. Light: no torch (the panes import it).

Scope: ``"checkpoint"`` when a result depends on one checkpoint's weights; ``"run"`` when
it reads the whole run (``curves``: its metrics and phases; ``progress``: every
checkpoint), so it changes when the run gets new checkpoints.

``optional`` items appear for some tasks or options only (the Fourier study's clusters
exist for modular tasks, not for ``add``). Column and grid names may be shell patterns
(``PC*``, ``freq_*``, ``head*_to_*``): their count depends on the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Iterable, Literal

from grok_engine.results import Grid, StudyResult, Table


@dataclass(frozen=True)
class TableSpec:
    """A table: its ``columns`` (always there, in order), ``optional_columns`` (names or
    patterns that may also appear)."""

    columns: tuple[str, ...]
    optional_columns: tuple[str, ...] = ()
    optional: bool = False

    def allows(self, column: str) -> bool:
        return column in self.columns or any(fnmatchcase(column, p) for p in self.optional_columns)


@dataclass(frozen=True)
class StudySchema:
    study: str
    scope: Literal["checkpoint", "run"]
    tables: dict[str, TableSpec] = field(default_factory=dict)
    grids: tuple[str, ...] = ()  # names or patterns
    optional_grids: tuple[str, ...] = ()
    scalars: tuple[str, ...] = ()
    optional_scalars: tuple[str, ...] = ()

    # -- the contract ------------------------------------------------------------------
    def check(self, result: StudyResult) -> None:
        """Raise ValueError naming what ``result`` has that is not declared, or lacks that
        is required."""
        problems = []
        for name, spec in self.tables.items():
            if not spec.optional and name not in result.tables:
                problems.append(f"table {name!r} missing")
        for name, table in result.tables.items():
            spec = self.tables.get(name)
            if spec is None:
                problems.append(f"table {name!r} not declared")
                continue
            problems += [f"column {name}.{c} missing" for c in spec.columns if c not in table.columns]
            problems += [f"column {name}.{c} not declared" for c in table.columns if not spec.allows(c)]
        problems += [f"grid {g!r} missing" for g in self.grids
                     if not any(fnmatchcase(name, g) for name in result.grids)]
        problems += [f"grid {name!r} not declared" for name in result.grids if not self._grid_declared(name)]
        problems += [f"scalar {s!r} missing" for s in self.scalars if s not in result.scalars]
        problems += [f"scalar {s!r} not declared" for s in result.scalars
                     if s not in self.scalars and s not in self.optional_scalars]
        if problems:
            raise ValueError(f"study {self.study!r} broke its schema: {'; '.join(problems)}")

    def _grid_declared(self, name: str) -> bool:
        return any(fnmatchcase(name, g) for g in (*self.grids, *self.optional_grids))

    def view(self, result: StudyResult | None) -> "ResultView":
        return ResultView(self, result)


class UndeclaredName(KeyError):
    """A reader asked a result for a name its study's schema does not declare."""


class ResultView:
    """Reading a StudyResult (or None: nothing yet) through its schema. Every read names a
    declared item, or raises UndeclaredName; ``READS`` (class-wide) records what was read,
    for the test that checks the panes against real results."""

    READS: set[tuple[str, str, str]] = set()  # (study, kind, name)

    def __init__(self, schema: StudySchema, result: StudyResult | None) -> None:
        self.schema = schema
        self.result = result

    def _read(self, kind: str, name: str, declared: bool) -> None:
        if not declared:
            raise UndeclaredName(f"study {self.schema.study!r} declares no {kind} {name!r}")
        ResultView.READS.add((self.schema.study, kind, name))

    def table(self, name: str) -> Table | None:
        """The table (None without a result, or when it is optional and absent)."""
        self._read("table", name, name in self.schema.tables)
        return None if self.result is None else self.result.tables.get(name)

    def column(self, table: str, column: str) -> Any:
        """The values of ``table``'s ``column`` (None when the table or an optional column
        is absent)."""
        spec = self.schema.tables.get(table)
        self._read("column", f"{table}.{column}", spec is not None and spec.allows(column))
        t = self.table(table)
        return None if t is None else t.columns.get(column)

    def columns(self, table: str, pattern: str) -> list[str]:
        """``table``'s column names that match the declared ``pattern`` (``freq_*``)."""
        spec = self.schema.tables.get(table)
        self._read("column", f"{table}.{pattern}", spec is not None and spec.allows(pattern))
        t = self.table(table)
        return [] if t is None else [c for c in t.column_names if fnmatchcase(c, pattern)]

    def grid(self, name: str) -> Grid | None:
        self._read("grid", name, self.schema._grid_declared(name))
        return None if self.result is None else self.result.grids.get(name)

    def grid_names(self, pattern: str) -> list[str]:
        """The result's grids that match the declared ``pattern``."""
        self._read("grid", pattern, pattern in (*self.schema.grids, *self.schema.optional_grids))
        return [] if self.result is None else [g for g in self.result.grids if fnmatchcase(g, pattern)]

    def scalar(self, name: str) -> Any:
        """A scalar: a required one is always there (None only without a result), an
        optional one is None when absent."""
        self._read("scalar", name, name in self.schema.scalars or name in self.schema.optional_scalars)
        return None if self.result is None else self.result.scalars.get(name)


def _spec(*columns: str, optional_columns: Iterable[str] = (), optional: bool = False) -> TableSpec:
    return TableSpec(tuple(columns), tuple(optional_columns), optional)


PHASE_SCALARS = ("memorization_end", "circuit_formation_end", "cleanup_end")

SCHEMAS: dict[str, StudySchema] = {s.study: s for s in (
    StudySchema("curves", "run",
                tables={"curves": _spec("epoch", "train_loss", "test_loss", "train_acc", "test_acc"),
                        "phases": _spec("phase", "start_epoch", "end_epoch", "definition", "source",
                                        optional_columns=("*_decades",))},
                scalars=(*PHASE_SCALARS, "phases_source", "epoch", "phase_at_epoch", "train_loss_at_epoch",
                         "test_loss_at_epoch", "train_acc_at_epoch", "test_acc_at_epoch")),
    StudySchema("embedding", "checkpoint",
                tables={"pca": _spec("component", "singular_value", "explained_ratio", "cumulative_ratio"),
                        "pc_scores": _spec("token", optional_columns=("PC*",)),
                        "pc1_pc2": _spec("token", "pc1", "pc2"),
                        "singular_values": _spec("index", "W_E", "random")},
                grids=("pc_scores",),
                scalars=("pc1_ratio", "pc2_ratio", "n_components")),
    StudySchema("attention", "checkpoint",
                tables={"mean_pattern": _spec("head", "to_a", "to_b", "to_eq")},
                grids=("mean_pattern", "head*_to_*"),
                scalars=("layer", "n_heads", "mean_to_a", "mean_to_b", "mean_to_eq")),
    StudySchema("probe", "checkpoint",
                tables={"probe": _spec("metric", "probe", "baseline"),
                        "predictions": _spec("a", "b", "true", "predicted")},
                scalars=("r2", "mse", "baseline_r2", "baseline_mse", "n_train", "n_test")),
    StudySchema("neurons", "checkpoint",
                # ranked by |r| with a+b (add), or by the fraction its best frequency explains
                tables={"ranking": _spec("rank", "neuron", optional_columns=("r", "abs_r", "frequency",
                                                                             "frac_explained")),
                        "pc_fit": _spec("feature", "coefficient")},
                grids=("pre", "post"),
                scalars=("ranked_by", "threshold", "n_above", "neuron", "fit_r2"),
                optional_scalars=("n_positive_above", "neuron_r", "neuron_frequency", "neuron_frac_explained",
                                  "note")),
    StudySchema("ablation", "checkpoint",
                tables={"failures": _spec("a", "b", "true", "predicted")},
                grids=("failures",),
                scalars=("keep", "acc_before", "acc_after", "n_failures", "n_rows")),
    StudySchema("fourier", "checkpoint",
                # the periodic structure exists for modular tasks only; add gets the norms
                tables={"embedding_norms": _spec("component", "frequency", "norm"),
                        "frequency_shares": _spec("frequency", "embedding_share", "neuron_share",
                                                  "w_logit_share", "key", optional=True),
                        "neuron_clusters": _spec("neuron", "frequency", "frac_explained", optional=True),
                        "cluster_sizes": _spec("frequency", "n_neurons", optional=True),
                        "w_logit_norms": _spec("component", "frequency", "norm", optional=True),
                        "logit_periodicity": _spec("frequency", "coefficient", "cos_sim", optional=True)},
                grids=("basis",),
                optional_grids=("neuron_freq_norm", "neuron_fourier"),
                optional_scalars=("key_frequencies", "key_frequencies_found", "top_frequencies",
                                  "periodicity_frequencies", "threshold", "n_clustered", "residual_fraction",
                                  "loss", "approx_loss", "note")),
    StudySchema("progress", "run",
                tables={"measures": _spec("epoch", "train_loss", "test_loss", "restricted_loss", "excluded_loss",
                                          "test_restricted_ratio", "residual_cos_sim", "sum_sq_weights",
                                          "gini_W_E", "gini_W_logit"),
                        "cos_coeffs": _spec("epoch", optional_columns=("freq_*",)),
                        "key_frequencies": _spec("frequency", "neuron_share")},
                grids=("cos_sim",),
                scalars=("key_frequencies", "n_checkpoints", "n_computed", *PHASE_SCALARS),
                optional_scalars=("note", "skipped_checkpoints")),
)}


def schema_of(study: str) -> StudySchema:
    return SCHEMAS[study]
