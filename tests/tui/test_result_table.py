"""The virtual ResultTable: sort order of raw values, cursor and scrolling, messages.

Unit tests of the module's functions, then Pilot tests of the widget alone at 40x12.
"""

from __future__ import annotations

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region

from grok_engine.results import Table
from grok_tui.widgets.heatmap import format_value
from grok_tui.widgets.result_table import (ResultTable, column_array, column_width, fit, float_width,
                                          format_cell, sort_order)

SIZE = (40, 12)  # 11 rows under the header
pytestmark = pytest.mark.anyio
NAN = float("nan")


# -- functions --------------------------------------------------------------------------------
def test_numeric_sort_is_stable_with_nan_last_both_ways():
    values = np.array([1.0, NAN, 0.0, 1.0, NAN, 0.0])
    assert sort_order(values).tolist() == [2, 5, 0, 3, 1, 4]
    assert sort_order(values, reverse=True).tolist() == [0, 3, 2, 5, 1, 4]


def test_reverse_integer_sort_handles_the_smallest_integer():
    values = np.array([0, np.iinfo(np.int64).min, 5, 0])
    assert sort_order(values, reverse=True).tolist() == [2, 0, 3, 1]


def test_mixed_column_sorts_numbers_before_strings_and_nan_last():
    values = column_array([3, "b", NAN, 1.5, "a", 2])
    assert values.dtype == object
    assert sort_order(values).tolist() == [3, 5, 0, 4, 1, 2]  # 1.5 2 3 a b NaN
    assert sort_order(values, reverse=True).tolist() == [1, 4, 0, 5, 3, 2]  # b a 3 2 1.5 NaN


def test_column_width_is_the_widest_formatted_value():
    assert column_width(np.array([-120, 7, 99])) == 4
    assert column_width(np.array([True, False])) == 5
    assert column_width(np.array([0.5, NAN, -0.001234])) == len("-0.001234")
    assert column_width(column_array(["x", "long name"])) == 9
    big = np.zeros(50_000)
    big[12_345] = -123456.0  # formatted "-1.235e+05"
    assert column_width(big) == 10


def test_a_large_column_fits_a_wide_value_that_no_sample_would_see():
    """Wider than its neighbours and not at an extreme: -0.001234 sits among values of
    0..1, so only a bound over every value's magnitude and sign sizes it."""
    big = np.linspace(0.0, 1.0, 50_000)
    big[12_345] = -0.001234
    assert column_width(big) == len("-0.001234")


@pytest.mark.parametrize("seed", range(5))
def test_float_width_bounds_every_formatted_value(seed):
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], 20_000) * 10.0 ** rng.uniform(-120, 120, 20_000)
    values[:50] = np.array([9999.5, 0.00099996, 99999.5, 1e-99, 9.9996e99, 0.0, NAN,
                            -np.inf, 1e4, 12345.0] * 5)
    widest = max(len(format_value(v)) for v in values.tolist())
    assert float_width(values) >= widest
    # within 3 cells of the truth (the 'g' format drops trailing zeros)
    assert float_width(values) - widest <= 3
    for decade in range(-6, 7):  # and exact on each decade's widest mantissa
        v = np.array([-9.8765 * 10.0 ** decade])
        assert float_width(v) == len(format_value(v[0])), decade


def test_rounding_noise_shows_as_zero_but_the_table_keeps_it():
    """The 7th singular value of a centred 7-row matrix is ~3e-16: float32 eps x 1.5 is the
    column's floor, so it shows as 0; a small but real value above the floor stays."""
    table = Table("pca", {"component": [1, 6, 7], "singular_value": [1.5, 2e-6, 3.094e-16]},
                  noise_floor=(("singular_value",),))
    floor = table.noise_threshold("singular_value")
    assert floor == pytest.approx(1.5 * np.finfo(np.float32).eps)
    assert table.noise_threshold("component") == 0.0
    assert format_cell(3.094e-16, 9, floor).strip() == "0"
    assert format_cell(2e-6, 9, floor).strip() == "2.000e-06"
    assert table.columns["singular_value"][2] == 3.094e-16
    with pytest.raises(ValueError, match="noise_floor names unknown columns"):
        Table("t", {"a": [1.0]}, noise_floor=(("b",),))


def test_fit_pads_and_clips():
    assert fit("12", 4, right=True) == "  12"
    assert fit("ab", 4, right=False) == "ab  "
    assert fit("abcdef", 4, right=False) == "abc…"


# -- widget -----------------------------------------------------------------------------------
class TableApp(App):
    """Mounts one ResultTable; records the row messages it posts."""

    def __init__(self) -> None:
        super().__init__()
        self.widget = ResultTable()
        self.selected: list[ResultTable.RowSelected] = []
        self.highlighted: list[ResultTable.RowHighlighted] = []

    def compose(self) -> ComposeResult:
        yield self.widget

    def on_result_table_row_selected(self, message: ResultTable.RowSelected) -> None:
        self.selected.append(message)

    def on_result_table_row_highlighted(self, message: ResultTable.RowHighlighted) -> None:
        self.highlighted.append(message)


def lines_of(widget: ResultTable) -> list[str]:
    w, h = widget.size
    return [strip.text for strip in widget.render_lines(Region(0, 0, w, h))]


def names(widget: ResultTable) -> list:
    return [widget.raw_row(i)["name"] for i in range(widget.row_count)]


SMALL = Table("t", {"name": ["x", "y", "z", "w", "v"], "value": [10.0, 9.0, NAN, 100.0, 9.0]})


async def test_sorts_raw_values_and_keeps_the_cursor_row():
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(SMALL)
        widget.focus()
        await pilot.press("down")  # cursor on "y"
        await pilot.press("S", "S")  # by name, then by value
        assert widget.sort_column == "value" and names(widget) == ["y", "v", "x", "w", "z"]
        assert widget.raw_row(widget.cursor_row)["name"] == "y" and widget.cursor_row == 0
        assert widget.raw_row(3) == {"name": "w", "value": 100.0}
        await pilot.press("R")
        assert names(widget) == ["w", "x", "y", "v", "z"]  # descending, ties in order, NaN last
        assert widget.cursor_row == 2
        header = lines_of(widget)[0]
        assert "value ▼" in header and "name  " in header
        assert "100" in lines_of(widget)[1] and "1e+02" not in lines_of(widget)[1]

        # a table of the same shape (a new checkpoint): the sort stays, the cursor follows
        # its raw row to where the new values sort it
        widget.move_cursor(row=1)
        assert widget.raw_row(1)["name"] == "x"
        widget.set_table(Table("t", {"name": SMALL.columns["name"], "value": [1e3, 9.0, NAN, 100.0, 9.0]}))
        assert (widget.sort_column, widget.sort_reverse) == ("value", True)
        assert widget.cursor_row == 0 and widget.raw_row(0)["name"] == "x"
        # another shape starts over
        widget.set_table(Table("u", {"name": ["a", "b"]}))
        assert widget.sort_column is None and widget.cursor_row == 0 and names(widget) == ["a", "b"]


async def test_header_click_sorts_and_again_reverses():
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(SMALL)
        await pilot.pause()
        value_x = lines_of(widget)[0].index("value")
        await pilot.click(widget, offset=(value_x, 0))
        assert widget.sort_column == "value" and not widget.sort_reverse
        assert names(widget) == ["y", "v", "x", "w", "z"]
        await pilot.click(widget, offset=(value_x, 0))
        assert widget.sort_reverse and names(widget) == ["w", "x", "y", "v", "z"]
        await pilot.click(widget, offset=(1, 0))
        assert widget.sort_column == "name" and names(widget) == ["v", "w", "x", "y", "z"]


async def test_a_large_table_shows_its_first_rows_and_reaches_the_last():
    n = 20_000
    table = Table("big", {"i": np.arange(n), "value": np.linspace(0, 1, n), "name": [f"r{i}" for i in range(n)]})
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(table)
        widget.focus()
        await pilot.pause()
        first = lines_of(widget)
        assert first[1].split() == ["0", "0", "r0"] and first[2].split()[::2] == ["1", "r1"]
        await pilot.press("ctrl+end")
        assert widget.cursor_row == n - 1 and widget.raw_row(widget.cursor_row)["i"] == n - 1
        assert lines_of(widget)[-1].split() == [str(n - 1), "1", f"r{n - 1}"]
        await pilot.press("pageup")  # a page: the 11 rows under the header; same screen line
        assert widget.cursor_row == n - 1 - 11
        assert lines_of(widget)[-1].split()[0] == str(n - 1 - 11)
        await pilot.press("ctrl+home")
        assert widget.cursor_row == 0 and lines_of(widget)[1].split()[0] == "0"
        # sorting descending puts the cursor's row (i=0) last: the view follows it
        widget.sort_by("i", reverse=True)
        await pilot.pause()
        assert widget.cursor_row == n - 1 and lines_of(widget)[-1].split()[0] == "0"


async def test_enter_and_a_second_click_select_the_raw_row():
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(SMALL)
        widget.sort_by("value", reverse=True)  # w x y v z
        assert widget.cursor_row == 1  # still on raw row 0, "x"
        widget.focus()
        await pilot.press("down", "enter")
        assert [m.row for m in app.selected] == [{"name": "y", "value": 9.0}]
        assert app.selected[0].raw_index == 1 and app.selected[0].cursor_row == 2
        assert app.selected[0].control is widget
        assert [m.row["name"] for m in app.highlighted] == ["y"]

        await pilot.click(widget, offset=(1, 5))  # display row 4: "z", NaN
        assert widget.cursor_row == 4 and len(app.selected) == 1
        await pilot.click(widget, offset=(1, 5))
        assert app.selected[-1].row["name"] == "z" and np.isnan(app.selected[-1].row["value"])


async def test_a_table_shown_again_keeps_its_column_layout(monkeypatch):
    """A revisited checkpoint gives back the very Table objects of the session's cache:
    their widths are not measured again (sizing a wide table formats every cell)."""
    from grok_tui.widgets import result_table

    measured: list[int] = []
    real = result_table.column_width
    monkeypatch.setattr(result_table, "column_width", lambda values: (measured.append(1), real(values))[1])
    first = Table("t", {"name": ["a", "b"], "value": [1.5, -0.001234]})
    second = Table("t", {"name": ["a", "b"], "value": [2.0, 3.0]})
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        widget = app.widget
        widget.set_table(first)
        widget.set_table(second)
        count = len(measured)
        widget.set_table(first)
        await pilot.pause()
        assert len(measured) == count  # remembered
        assert widget._widths[1] == len("-0.001234")
        widget.set_table(Table("t", {"name": ["a", "b"], "value": [1.5, -0.001234]}))  # equal, not the same
        assert len(measured) == count + 2


async def test_empty_and_missing_tables_render_without_rows():
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(None)
        await pilot.pause()
        assert widget.row_count == 0 and not "".join(lines_of(widget)).strip()
        widget.set_table(Table("e", {"name": [], "value": []}))
        widget.focus()
        await pilot.press("down", "enter", "S")
        assert widget.row_count == 0 and app.selected == [] and "name ▲" in lines_of(widget)[0]


async def test_a_table_wider_than_its_view_shows_only_whole_columns():
    """Eight columns of 22.82 do not fit in 40 cells: the column the edge would cut is left
    blank (not '22.'), the header says more lies right ('›'), and after scrolling, left."""
    table = Table("wide", {f"freq_{k}": [22.82, -4.663] for k in range(1, 9)})
    app = TableApp()
    widget = app.widget
    async with app.run_test(size=SIZE) as pilot:
        widget.set_table(table)
        await pilot.pause()
        header, row = lines_of(widget)[:2]
        assert header.endswith("›") and not header.startswith("‹")
        cells = row.split()
        assert cells and all(c == "22.82" for c in cells)  # whole numbers only
        assert len(cells) < 8
        widget.scroll_to(x=13, animate=False, force=True)
        await pilot.pause()
        header, row = lines_of(widget)[:2]
        assert header.startswith("‹")
        assert all(c == "22.82" for c in row.split())
