"""A virtual table of a grok_engine ``Table``: raw values kept, only visible rows formatted.

Showing a table costs (nearly) nothing per row: the widget keeps the ``Table``, its columns
as numpy arrays and ``order`` (the display order, a permutation of row indices), and builds
each visible line in :meth:`render_line` (Textual's Line API), formatting a row only when it
is drawn (an LRU keeps the formatted lines). Column widths come from the header and the
columns' values (see :func:`column_width`): always wide enough, so no number is clipped.
Values below a column's rounding floor (``Table.noise_floor``) show as 0.

Layout: a fixed bold header line (``name ▲``; the arrow slot is always there so sorting
never changes the widths), then one line per row with zebra stripes and the row cursor.
Numbers are right-aligned, strings left-aligned, each cell padded by one space each side.

Sorting: click a column header (again to reverse), or press ``S`` to sort by the next
column and ``R`` to reverse (lower-case s and r belong to the app: stop/resume training).
The sort compares the raw values (NaN last either way, numbers before strings), never the
formatted text. The cursor stays on the same raw row across sorts and across ``set_table``
with a table of the same shape (the app re-shows a study after an option change).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from grok_engine.results import Table
from grok_tui.widgets.heatmap import format_value

SAMPLE_ROWS = 1000  # rows formatted to size a float or text column of a larger table
CACHED_LINES = 512  # formatted rows kept (a few screens of scrolling)
CACHED_LAYOUTS = 4  # tables whose column layout is kept (see ResultTable._layouts)
PADDING = 1  # spaces each side of a cell


# -- columns ----------------------------------------------------------------------------------
def column_array(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a 1-D array: numeric dtypes stay, anything else becomes dtype object
    (so a mixed list keeps its numbers instead of becoming strings)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biufO":
        return values
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _is_number(value: Any) -> bool:
    """A value shown right-aligned: int or float, but not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sort_order(values: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Row indices [n] that order ``values`` ascending (descending when ``reverse``).

    Stable (ties keep their table order) and NaN last in both directions. In object
    columns numbers come before strings (after them when reversed).
    """
    if values.dtype.kind in "biuf":
        return _numeric_order(values, reverse)
    return _object_order(values, reverse)


def _numeric_order(values: np.ndarray, reverse: bool) -> np.ndarray:
    nan = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    kept = np.flatnonzero(~nan)
    v = values[kept]
    if reverse:
        # Ascending sort of the reversed values, read backwards: descending with ties in
        # table order (negating would overflow the smallest integer).
        rank = len(v) - 1 - np.argsort(v[::-1], kind="stable")[::-1]
    else:
        rank = np.argsort(v, kind="stable")
    return np.concatenate([kept[rank], np.flatnonzero(nan)]).astype(np.intp)


def _object_order(values: np.ndarray, reverse: bool) -> np.ndarray:
    def key(i: int) -> tuple[int, Any]:
        v = _item(values[i])
        if isinstance(v, float) and math.isnan(v):
            return (-1 if reverse else 2, 0)  # lowest when reversed: still last
        if isinstance(v, (int, float)):
            return (0, v)
        return (1, str(v))

    return np.array(sorted(range(len(values)), key=key, reverse=reverse), dtype=np.intp)


def column_width(values: np.ndarray) -> int:
    """Cells the widest formatted value of ``values`` needs: never less, so no cell is
    clipped.

    Exact for integer and bool columns (from the extremes), and for any column of up to
    SAMPLE_ROWS rows (every value formatted). A longer float column takes
    :func:`float_width`'s bound, exact for the magnitudes present; a longer text column
    measures every value (text columns are short lists of names in practice).
    """
    n = len(values)
    if n == 0:
        return 0
    kind = values.dtype.kind
    if kind in "iu":
        return max(len(str(values.min())), len(str(values.max())))
    if kind == "b":
        return max(len(str(bool(v))) for v in np.unique(values))
    if kind == "f" and n > SAMPLE_ROWS:
        return float_width(values)
    if kind != "f":
        return max(cell_len(format_value(_item(v))) for v in values)
    # Python floats and len(): formatted numbers are ASCII, and wide tables (a column per
    # principal component) size thousands of them.
    return max(len(format_value(v)) for v in values.tolist())


# Longest text of format_value (4 significant digits, exponent form outside [1e-3, 1e4))
# per decade of |v|, without the sign: '0.001234' (8) ... '0.1234' (6), '1.234' ... '123.4'
# (5), '1234' (4; '1e+04' (5) from 9999.5 up), then '1.234e+04' (9).
_DECADE_WIDTH = {-3: 8, -2: 7, -1: 6, 0: 5, 1: 5, 2: 5, 3: 4}


def float_width(values: np.ndarray) -> int:
    """An upper bound of ``len(format_value(v))`` over a float array, from the decades and
    signs present (no formatting): exact but for trailing zeros, which the 'g' format
    drops."""
    v = values.astype(np.float64, copy=False)
    finite = np.isfinite(v)
    width = 0
    if not finite.all():
        width = 4 if np.isneginf(v).any() else 3  # 'NaN', 'inf', '-inf'
    f = v[finite & (v != 0)]
    if not f.size:
        return max(width, 1)  # '0'
    decades = np.floor(np.log10(np.abs(f))).astype(np.int64)
    for decade in np.unique(decades).tolist():
        in_decade = f[decades == decade]
        body = _DECADE_WIDTH.get(decade, 10 if abs(decade) >= 99 else 9)
        if decade == 3 and (np.abs(in_decade) >= 9999.5).any():
            body = 5
        width = max(width, body + bool((in_decade < 0).any()))
    return width


def fit(text: str, width: int, right: bool) -> str:
    """``text`` padded to ``width`` cells (on the left when ``right``), or clipped with '…'."""
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…"
    return " " * (width - size) + text if right else text + " " * (width - size)


def format_cell(value: Any, width: int, noise: float = 0.0) -> str:
    """One cell of a row line: the formatted raw value aligned in ``width``, padded. A number
    whose magnitude is below ``noise`` (its column's rounding floor, see
    ``Table.noise_floor``) shows as 0."""
    pad = " " * PADDING
    if noise and _is_number(value) and abs(value) < noise:
        value = 0
    return pad + fit(format_value(value), width, _is_number(value)) + pad


# -- widget -----------------------------------------------------------------------------------
class _RowMessage(Message):
    """About the row shown at ``cursor_row``: ``raw_index`` is its index in the Table's
    columns and ``row`` its raw values by column name."""

    def __init__(self, result_table: "ResultTable", cursor_row: int) -> None:
        super().__init__()
        self.result_table = result_table
        self.cursor_row = cursor_row
        self.raw_index = result_table.raw_row_index(cursor_row)
        self.row = result_table.raw_row(cursor_row)

    @property
    def control(self) -> "ResultTable":
        return self.result_table


class ResultTable(ScrollView, can_focus=True, inherit_bindings=False):
    """Shows a :class:`grok_engine.results.Table`; ``table`` is what `e` exports."""

    # Not inherited: plain home/end select the first/last checkpoint in the app.
    BINDINGS = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home", "first_row", "First row", show=False),
        Binding("ctrl+end", "last_row", "Last row", show=False),
        # Widget's actions: they pass the key on (to prev/next checkpoint) when the table
        # is not wider than the view.
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("enter", "select_row", "Select row", show=False),
        Binding("S", "sort_next", "Sort by next column"),
        Binding("R", "sort_reverse", "Reverse sort"),
    ]

    COMPONENT_CLASSES = {"result-table--header", "result-table--cursor",
                         "result-table--even-row", "result-table--odd-row"}

    # DataTable's look (header, zebra stripes, row cursor, focus tint).
    DEFAULT_CSS = """
    ResultTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        &:focus {
            background-tint: $foreground 5%;
            & > .result-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .result-table--header { background-tint: $foreground 5%; }
        }
        &:dark > .result-table--even-row { background: $surface-darken-1 40%; }
        & > .result-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .result-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .result-table--even-row { background: $surface-lighten-1 50%; }
        & > .result-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(_RowMessage):
        """The cursor moved to a row."""

    class RowSelected(_RowMessage):
        """Enter on a row, or a click on the row under the cursor."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.table: Table | None = None
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._columns: list[np.ndarray] = []  # the table's columns, in display order
        self._widths: list[int] = []  # content cells per column (padding excluded)
        self._noise: list[float] = []  # per column: magnitudes below this show as 0
        self._order = np.zeros(0, dtype=np.intp)  # display row -> raw row index
        self._cursor = 0
        self._lines: LRUCache[int, str] = LRUCache(CACHED_LINES)  # raw row -> formatted line
        # id(table) -> (table, columns, widths, noise) of the tables shown last: a revisit of
        # a checkpoint gets the very Table objects of the session's result cache back, and
        # sizing a wide one formats every cell (pc_scores at p=113: 113 x 114, ~80 ms)
        self._layouts: LRUCache[int, tuple[Table, list[np.ndarray], list[int], list[float]]] = \
            LRUCache(CACHED_LAYOUTS)

    # -- data ---------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        """Display row under the cursor (0 when the table is empty)."""
        return self._cursor

    def set_table(self, table: Table | None) -> None:
        """Show ``table`` (None clears). Keeps the sort, the cursor's raw row and the scroll
        position when the new table has the same columns and row count."""
        same_shape = (self.table is not None and table is not None
                      and self.table.column_names == table.column_names
                      and self.table.n_rows == table.n_rows)
        cursor_raw = self.raw_row_index(self._cursor) if same_shape and self.row_count else None
        self.table = table
        self._lines.clear()
        self._columns, self._widths, self._noise = self._layout(table)
        if not same_shape:
            self.sort_column, self.sort_reverse = None, False
            self._cursor = 0
            self.scroll_to(0, 0, animate=False, force=True)
        self._order = self._sorted_order() if table is not None else np.zeros(0, dtype=np.intp)
        self.virtual_size = Size(sum(w + 2 * PADDING for w in self._widths), self.row_count + 1)
        if cursor_raw is not None:
            self._cursor = self._display_row(cursor_raw)
            self._scroll_to_cursor()
        self.refresh()

    def _layout(self, table: Table | None) -> tuple[list[np.ndarray], list[int], list[float]]:
        """(columns as arrays, content widths, noise thresholds) of ``table``, remembered
        for the tables shown last (the widths do not depend on the sort)."""
        if table is None:
            return [], [], []
        known = self._layouts.get(id(table))
        if known is not None and known[0] is table:
            return known[1], known[2], known[3]
        columns = [column_array(v) for v in table.columns.values()]
        widths = [max(cell_len(self._label(name)), column_width(values))
                  for name, values in zip(table.column_names, columns)]
        noise = [table.noise_threshold(name) for name in table.column_names]
        self._layouts[id(table)] = (table, columns, widths, noise)
        return columns, widths, noise

    @property
    def column_names(self) -> list[str]:
        return self.table.column_names if self.table is not None else []

    def raw_row_index(self, display_row: int) -> int:
        """Index into the Table's columns of the row shown at ``display_row``."""
        return int(self._order[display_row])

    def raw_row(self, display_row: int) -> dict[str, Any]:
        """The raw values of the row shown at ``display_row``, by column name."""
        assert self.table is not None
        i = self.raw_row_index(display_row)
        return {name: _item(col[i]) for name, col in self.table.columns.items()}

    def _display_row(self, raw_index: int) -> int:
        return int(np.flatnonzero(self._order == raw_index)[0])

    # -- sorting ------------------------------------------------------------------------
    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort rows by the raw values of ``column`` (NaN last); the cursor keeps its row."""
        if self.table is None or column not in self.table.columns:
            return
        cursor_raw = self.raw_row_index(self._cursor) if self.row_count else None
        self.sort_column, self.sort_reverse = column, reverse
        self._order = self._sorted_order()
        if cursor_raw is not None:
            self._cursor = self._display_row(cursor_raw)
            self._scroll_to_cursor()
        self.refresh()

    def _sorted_order(self) -> np.ndarray:
        """The display order for the current table and sort: [n_rows] raw row indices."""
        assert self.table is not None
        if self.sort_column is None:
            return np.arange(self.table.n_rows, dtype=np.intp)
        values = self._columns[self.column_names.index(self.sort_column)]
        return sort_order(values, self.sort_reverse)

    def _label(self, name: str) -> str:
        # The arrow slot is always there so sorting never changes the column widths.
        arrow = " "
        if name == self.sort_column:
            arrow = "▼" if self.sort_reverse else "▲"
        return f"{name} {arrow}"

    def action_sort_next(self) -> None:
        names = self.column_names
        if not names:
            return
        nxt = names[0] if self.sort_column not in names else names[(names.index(self.sort_column) + 1) % len(names)]
        self.sort_by(nxt, reverse=False)

    def action_sort_reverse(self) -> None:
        if self.column_names:
            self.sort_by(self.sort_column or self.column_names[0], reverse=not self.sort_reverse)

    # -- cursor -------------------------------------------------------------------------
    def move_cursor(self, *, row: int, scroll: bool = True) -> None:
        """Put the cursor on display ``row`` (clamped), scroll it into view and post
        RowHighlighted when it moved."""
        if not self.row_count:
            return
        old, self._cursor = self._cursor, min(max(row, 0), self.row_count - 1)
        if scroll:
            self._scroll_to_cursor()
        if self._cursor != old:
            self.refresh_line(old + 1)
            self.refresh_line(self._cursor + 1)
            self.post_message(self.RowHighlighted(self, self._cursor))

    @property
    def _page(self) -> int:
        """Rows visible below the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        """Scroll the least that shows the cursor's row under the header."""
        if self.scrollable_content_region.height <= 1:  # hidden or not laid out: on_resize
            return
        row, top = self._cursor, self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + self._page:
            self.scroll_to(y=row - self._page + 1, animate=False, force=True)

    def on_resize(self, event: events.Resize) -> None:
        self._scroll_to_cursor()

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        self.scroll_to(y=self.scroll_y - self._page, animate=False, force=True)
        self.move_cursor(row=self._cursor - self._page)

    def action_page_down(self) -> None:
        self.scroll_to(y=self.scroll_y + self._page, animate=False, force=True)
        self.move_cursor(row=self._cursor + self._page)

    def action_first_row(self) -> None:
        self.move_cursor(row=0)

    def action_last_row(self) -> None:
        self.move_cursor(row=self.row_count - 1)

    def action_select_row(self) -> None:
        if self.row_count:
            self.post_message(self.RowSelected(self, self._cursor))

    def on_click(self, event: events.Click) -> None:
        """A header sorts by its column (again: reversed); a row takes the cursor, and a
        click on the cursor's row selects it."""
        offset = event.get_content_offset(self)
        if offset is None or self.table is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + self.scroll_offset.x)
            if column is not None:
                self.sort_by(column, reverse=column == self.sort_column and not self.sort_reverse)
            return
        row = offset.y - 1 + self.scroll_offset.y
        if row >= self.row_count:
            return
        if row == self._cursor:
            self.action_select_row()
        else:
            self.move_cursor(row=row)

    def _column_at(self, x: int) -> str | None:
        """Name of the column drawn at virtual x (None past the last column)."""
        right = 0
        for name, width in zip(self.column_names, self._widths):
            right += width + 2 * PADDING
            if x < right:
                return name
        return None

    # -- drawing ------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the view: the header at 0, else the row at ``y - 1 + scroll_y``."""
        width = self.size.width
        if self.table is None:
            return Strip.blank(width, self.rich_style)
        if y == 0:
            return self._strip(self._header_line(), self.get_component_rich_style("result-table--header"),
                               header=True)
        row = y - 1 + self.scroll_offset.y
        if row >= self.row_count:
            return Strip.blank(width, self.rich_style)
        return self._strip(self._row_line(self.raw_row_index(row)), self._row_style(row))

    def _strip(self, line: str, style: Style, header: bool = False) -> Strip:
        """``line`` scrolled horizontally and filled to the view's width in ``style``, with
        only whole columns: a column the view's edge would cut is left blank (a cut number
        reads as another number: '22.' for 22.82). The header marks hidden columns with '‹'
        at the left edge and '›' at the right one."""
        x, width = self.scroll_offset.x, self.size.width
        view = min(width, self.scrollable_content_region.width or width)  # left of a scrollbar
        left, right = self._whole_columns(x, view)
        cells = list(" " * (left - x) + line[left:right] + " " * max(0, x + width - right))[:width]
        if header and cells:
            if x > 0:
                cells[0] = "‹"
            if right < len(line):
                cells[view - 1] = "›"
        return Strip([Segment("".join(cells), style)])

    def _whole_columns(self, x: int, width: int) -> tuple[int, int]:
        """[left, right): the span of the columns that lie wholly inside [x, x + width)."""
        left = right = None
        start = 0
        for w in self._widths:
            end = start + w + 2 * PADDING
            if start >= x and end <= x + width:
                left = start if left is None else left
                right = end
            start = end
        if left is None:  # no whole column fits (one wider than the view): show what there is
            return x, x + width
        return left, right

    def _header_line(self) -> str:
        pad = " " * PADDING
        return "".join(pad + fit(self._label(name), width, right=False) + pad
                       for name, width in zip(self.column_names, self._widths))

    def _row_line(self, raw_index: int) -> str:
        """The formatted cells of raw row ``raw_index``, cached."""
        line = self._lines.get(raw_index)
        if line is None:
            line = "".join(format_cell(_item(values[raw_index]), width, noise)
                           for values, width, noise in zip(self._columns, self._widths, self._noise))
            self._lines.set(raw_index, line)
        return line

    def _row_style(self, row: int) -> Style:
        """Zebra stripe of display ``row``, plus the cursor's style on the cursor row."""
        style = self.get_component_rich_style("result-table--odd-row" if row % 2 else "result-table--even-row")
        if row == self._cursor:
            style += self.get_component_rich_style("result-table--cursor")
        return style
