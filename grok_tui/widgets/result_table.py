"""A DataTable fed by a grok_engine ``Table``: raw values kept, formatted only for display.

Sorting: click a column header (again to reverse), or press ``S`` to sort by the next
column and ``R`` to reverse (lower-case s and r belong to the app: stop/resume training). The sort compares the raw values (NaN last either way), never
the formatted text. Row keys are the table's original row indices, so the cursor stays on
the same row across sorts and across ``set_table`` with a table of the same shape
(the app re-shows a study after an option change).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from grok_engine.results import Table
from grok_tui.widgets.heatmap import format_value


class Cell:
    """One raw value with its display text; DataTable renders ``__rich__``."""

    __slots__ = ("raw", "text")

    def __init__(self, raw: Any) -> None:
        if isinstance(raw, np.generic):
            raw = raw.item()
        self.raw = raw
        numeric = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        self.text = Text(format_value(raw), justify="right" if numeric else "left")

    def __rich__(self) -> Text:
        return self.text

    @property
    def is_nan(self) -> bool:
        return isinstance(self.raw, float) and math.isnan(self.raw)

    def sort_key(self) -> tuple[int, Any]:
        """(kind, value): numbers before strings so mixed columns still sort."""
        if self.is_nan:
            return (2, 0)
        if isinstance(self.raw, (int, float)):
            return (0, self.raw)
        return (1, str(self.raw))


class ResultTable(DataTable):
    """Shows a :class:`grok_engine.results.Table`; ``table`` is what `e` exports."""

    BINDINGS = [
        Binding("S", "sort_next", "Sort by next column"),
        Binding("R", "sort_reverse", "Reverse sort"),
    ]

    DEFAULT_CSS = """
    ResultTable { height: 1fr; }
    ResultTable:focus { background-tint: $foreground 5%; }
    """

    def __init__(self, *, cursor_type: str = "row", name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(cursor_type=cursor_type, zebra_stripes=True, name=name, id=id, classes=classes)
        self.table: Table | None = None
        self.sort_column: str | None = None
        self.sort_reverse = False

    def set_table(self, table: Table | None) -> None:
        """Show ``table``; keep sort and cursor row when the columns are the same."""
        same_shape = (self.table is not None and table is not None
                      and self.table.column_names == table.column_names
                      and self.table.n_rows == table.n_rows)
        cursor_key = self.raw_row_index(self.cursor_row) if same_shape and self.row_count else None
        self.table = table
        self.clear(columns=True)
        if table is None:
            return
        if not same_shape:
            self.sort_column, self.sort_reverse = None, False
        for name in table.column_names:
            self.add_column(self._label(name), key=name)
        for i, row in enumerate(table.rows()):
            self.add_row(*(Cell(v) for v in row), key=str(i))
        if self.sort_column is not None:
            self._apply_sort()
        if cursor_key is not None:
            self.move_cursor(row=self.get_row_index(str(cursor_key)), animate=False)

    def _label(self, name: str) -> Text:
        # The arrow slot is always there so sorting never changes the column widths.
        arrow = " "
        if name == self.sort_column:
            arrow = "▼" if self.sort_reverse else "▲"
        return Text(f"{name} {arrow}", style="bold")

    def raw_row_index(self, display_row: int) -> int:
        """Index into the Table's columns of the row shown at ``display_row``."""
        row_key, _ = self.coordinate_to_cell_key((display_row, 0))
        return int(row_key.value)

    def raw_row(self, display_row: int) -> dict[str, Any]:
        """The raw values of the row shown at ``display_row``, by column name."""
        assert self.table is not None
        i = self.raw_row_index(display_row)
        return {name: _item(col[i]) for name, col in self.table.columns.items()}

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort rows by the raw values of ``column`` (NaN last)."""
        if self.table is None or column not in self.table.columns:
            return
        self.sort_column, self.sort_reverse = column, reverse
        self._apply_sort()

    def _apply_sort(self) -> None:
        assert self.sort_column is not None
        reverse = self.sort_reverse
        cursor_key = self.raw_row_index(self.cursor_row) if self.row_count else None

        def key(cell: Cell) -> tuple[int, Any]:
            kind, value = cell.sort_key()
            # NaN stays last when descending too: flip its kind so it sorts lowest.
            return ((-1 if kind == 2 else kind), value) if reverse else (kind, value)

        self.sort(self.sort_column, key=key, reverse=reverse)
        for name, column in self.columns.items():
            column.label = self._label(str(name.value))
        self.refresh()
        if cursor_key is not None:
            self.move_cursor(row=self.get_row_index(str(cursor_key)), animate=False)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.sort_by(column, reverse=(column == self.sort_column and not self.sort_reverse))

    def action_sort_next(self) -> None:
        if self.table is None or not self.table.column_names:
            return
        names = self.table.column_names
        nxt = names[0] if self.sort_column not in names else names[(names.index(self.sort_column) + 1) % len(names)]
        self.sort_by(nxt, reverse=False)

    def action_sort_reverse(self) -> None:
        if self.table is None or not self.table.column_names:
            return
        self.sort_by(self.sort_column or self.table.column_names[0], reverse=not self.sort_reverse)


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
