"""What a study returns: named tables (columns of raw values) and grids (2-D arrays with
axis labels and a title). The UI formats them, the CSV writer writes them; neither computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7: the resolution of the weights


@dataclass
class Table:
    """Columns of equal length. ``columns`` maps a column name to a 1-D array or list of raw
    values (numbers or strings), in display order. ``options``: as for :class:`Grid`.

    >>> t = Table("pca", {"component": [1, 2], "explained": [0.73, 0.26]})
    >>> t.n_rows
    2

    ``noise_floor`` names groups of float columns that share one scale and whose rounding
    error is relative to the largest magnitude in the group: singular values, variance
    ratios, PC scores, fitted coefficients. A value below float32 eps times that largest is
    rounding noise (the 7th singular value of a centred 7-row matrix: ~3e-16, a different
    one on every BLAS kernel), so the UI shows it as 0; the CSV keeps the raw value.
    """

    name: str
    columns: dict[str, Sequence[Any]]
    title: str = ""
    description: str = ""
    noise_floor: tuple[tuple[str, ...], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # study options it depends on
    # noise_threshold per column, computed once per group on first use (a table's columns
    # are not changed after it is made): a table of 114 PC columns in one group asked it
    # 114 times, each over the whole group (75 ms of the Embedding pane at p=113)
    _thresholds: dict[str, float] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"table {self.name!r} has columns of different lengths: {lengths}")
        unknown = [c for group in self.noise_floor for c in group if c not in self.columns]
        if unknown:
            raise ValueError(f"table {self.name!r}: noise_floor names unknown columns {unknown}")

    def noise_threshold(self, column: str) -> float:
        """Magnitude below which ``column``'s values are rounding noise: float32 eps times the
        largest finite magnitude of its ``noise_floor`` group; 0.0 for a column in no group."""
        if self._thresholds is None:
            thresholds: dict[str, float] = {}
            for group in self.noise_floor:
                largest = 0.0
                for name in group:
                    values = np.abs(np.asarray(self.columns[name], dtype=np.float64))
                    finite = values[np.isfinite(values)]
                    if finite.size:
                        largest = max(largest, float(finite.max()))
                for name in group:
                    thresholds.setdefault(name, FLOAT32_EPS * largest)  # its first group, as before
            self._thresholds = thresholds
        return self._thresholds.get(column, 0.0)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def rows(self) -> list[list[Any]]:
        cols = [list(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else list(v)
                for v in self.columns.values()]
        return [list(r) for r in zip(*cols)]


@dataclass
class Grid:
    """A 2-D array ``values[row, col]`` with labels for both axes.

    ``row_labels[i]`` names row i (e.g. the value of a), ``col_labels[j]`` names column j
    (e.g. the value of b); ``row_axis``/``col_axis`` name the axes ("a", "b", "head", ...).
    ``centered`` says the values are signed and a colour map should be centred at zero.
    ``options``: the study options the values depend on (a neuron, the components kept),
    resolved (a defaulted neuron is its number); export puts them in the file name.
    """

    name: str
    values: np.ndarray
    row_axis: str
    col_axis: str
    row_labels: list[Any]
    col_labels: list[Any]
    title: str = ""
    centered: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values)
        if self.values.ndim != 2:
            raise ValueError(f"grid {self.name!r} has shape {self.values.shape}, expected 2-D")
        r, c = self.values.shape
        if len(self.row_labels) != r or len(self.col_labels) != c:
            raise ValueError(f"grid {self.name!r}: {r}x{c} values but {len(self.row_labels)} row "
                             f"and {len(self.col_labels)} column labels")


@dataclass
class StudyResult:
    """Everything one study computed for one checkpoint."""

    study: str
    epoch: int
    tables: dict[str, Table] = field(default_factory=dict)
    grids: dict[str, Grid] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)  # headline numbers (R^2, accuracy)

    def add(self, item: Table | Grid) -> None:
        (self.tables if isinstance(item, Table) else self.grids)[item.name] = item

    def items(self) -> list[Table | Grid]:
        return [*self.tables.values(), *self.grids.values()]
