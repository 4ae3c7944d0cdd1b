"""A colour map of a grok_engine Grid with labelled axes and a keyboard cursor.

Layout, top to bottom (one terminal line each unless said)::

     title · note                             <- bold; accent background while focused
    a\\b 0    5    10     -0.52 ▇▇▇▇▇▇ 0.52  <- corner (row\\col axis), a whole label every
      0 [][][][][][][]                           1, 2, 5, 10, ... columns; the colour bar goes
      ...                                        on the first of these lines with room
    a=3  b=5  0.1234                          <- the value under the cursor ("[]" on the map)
    showing a 0..39 of 113: ...               <- when the grid is larger than the view

Each value is drawn as a 2-character square when the grid fits, else with half blocks
('▀', foreground = upper row, background = lower row) so two rows share one line. A grid
too large even for that (113 x 113 at 80 x 24) is shown at full resolution through a view
that scrolls with the cursor (and the mouse wheel): every value on screen is one value of
the grid, never an average (averaging blocks aliases the periodic patterns these models
learn), and the labels of the axes are those of the rows and columns in view. Lines are
built as Rich Segments in :meth:`render_line`: no child widgets.

Colours: a diverging blue-white-red map centred at zero when ``grid.centered`` (the scale is
symmetric, +-max|value|), else viridis from min to max. NaN (e.g. b = 0 in mod_div) is blank,
and so are the values a pane leaves out of the scale (``set_grid(leave_out=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from grok_tui.format import compact as format_value

from grok_engine.results import Grid

N_LEVELS = 33  # odd: the middle level is exactly zero on a centred map

# Plotly's RdBu reversed (negative blue, positive red) and viridis, as colour stops.
_DIVERGING = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
              "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"]
_SEQUENTIAL = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
               "#35b779", "#6ece58", "#b5de2b", "#fde725"]


def _palette(stops: list[str], n: int = N_LEVELS) -> list[tuple[int, int, int]]:
    """``n`` colours linearly interpolated between hex ``stops``."""
    rgb = np.array([[int(s[i:i + 2], 16) for i in (1, 3, 5)] for s in stops], dtype=float)
    pos = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, n)
    out = np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=1)
    return [tuple(int(round(c)) for c in row) for row in out]


DIVERGING = _palette(_DIVERGING)
SEQUENTIAL = _palette(_SEQUENTIAL)


def tick_step(label_width: int, cell_w: int) -> int:
    """Grid columns between two labelled ticks: the smallest of 1, 2, 5, 10, 20, 50, ...
    that leaves ``label_width`` characters and a space per tick, so no label is cut.

    >>> tick_step(3, 1)  # labels up to "112", one character per column
    5
    >>> tick_step(1, 2)
    1
    """
    step = 1
    while step * cell_w < label_width + 1:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return step


@dataclass(frozen=True)
class _Layout:
    """How the grid maps onto the widget's cells for one size; the view scrolls over it."""

    gutter: int  # columns left of the map (row labels), including one space
    cell_w: int  # characters per value (2 = square, 1 with half blocks)
    half: bool  # two grid rows per terminal line
    view_rows: int  # grid rows on screen at once
    view_cols: int  # grid columns on screen at once
    map_lines: int  # terminal lines the map uses
    tick_step: int  # grid columns between labelled ticks


class Heatmap(Widget, can_focus=True):
    """Draws a :class:`grok_engine.results.Grid`; arrows move the cursor (the view scrolls
    with it), the mouse wheel scrolls, a click selects."""

    BINDINGS = [
        Binding("up", "move(-1, 0)", "Cursor up", show=False),
        Binding("down", "move(1, 0)", "Cursor down", show=False),
        Binding("left", "move(0, -1)", "Cursor left", show=False),
        Binding("right", "move(0, 1)", "Cursor right", show=False),
        Binding("shift+up,pageup", "move(-5, 0)", "Cursor up 5", show=False),
        Binding("shift+down,pagedown", "move(5, 0)", "Cursor down 5", show=False),
        Binding("shift+left", "move(0, -5)", "Cursor left 5", show=False),
        Binding("shift+right", "move(0, 5)", "Cursor right 5", show=False),
        # plain home/end select the first/last checkpoint in the app
        Binding("ctrl+home", "jump('first')", "First cell", show=False),
        Binding("ctrl+end", "jump('last')", "Last cell", show=False),
    ]

    COMPONENT_CLASSES = {"heatmap--title", "heatmap--axis", "heatmap--status", "heatmap--cursor-label"}

    DEFAULT_CSS = """
    Heatmap {
        width: 1fr;
        height: 1fr;
        min-height: 6;
        min-width: 20;
    }
    Heatmap > .heatmap--title { text-style: bold; }
    Heatmap:focus > .heatmap--title { background: $accent; color: $text; }
    Heatmap > .heatmap--axis { color: $text-muted; }
    Heatmap > .heatmap--status { color: $text; }
    Heatmap > .heatmap--cursor-label { text-style: reverse; }
    Heatmap:focus { background-tint: $foreground 5%; }
    """

    class CursorMoved(Message):
        """The cursor is on ``grid.values[row, col]``."""

        def __init__(self, heatmap: "Heatmap", row: int, col: int, value: float) -> None:
            super().__init__()
            self.heatmap = heatmap
            self.row = row
            self.col = col
            self.value = value

        @property
        def control(self) -> "Heatmap":
            return self.heatmap

    def __init__(self, grid: Grid | None = None, *, empty_text: str = "no data",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.grid: Grid | None = None
        self.empty_text = empty_text
        self.note = ""
        self.cursor_row = 0
        self.cursor_col = 0
        self.max_cell_w = 2  # characters per value at most (see _get_layout)
        self.view_row = 0  # the grid row and column at the top-left of the view
        self.view_col = 0
        self._left_out = np.zeros((0, 0), dtype=bool)
        self._level_grid = np.zeros((0, 0), dtype=int)
        self._layout_key: tuple[Any, ...] | None = None
        self._layout: _Layout | None = None
        self._vmin = 0.0
        self._vmax = 0.0
        self._styles: dict[tuple[int, int], Style] = {}
        if grid is not None:
            self.set_grid(grid)

    # -- data -----------------------------------------------------------------------------
    def set_grid(self, grid: Grid | None, *, leave_out: np.ndarray | None = None, note: str = "") -> None:
        """Show ``grid`` (None clears). The cursor keeps its place when it still fits.

        ``leave_out``: a boolean mask [R, C] of values drawn blank and left out of the
        colour scale (a neuron's constant term, which would wash out the rest); the cursor
        still reads them. ``note`` follows the title (say there what is left out).
        """
        self.grid = grid
        self.note = note
        self._layout_key = None
        self._styles.clear()  # the palette depends on grid.centered
        if grid is not None:
            values = np.asarray(grid.values, dtype=float)
            self._left_out = (np.zeros(values.shape, dtype=bool) if leave_out is None
                              else np.asarray(leave_out, dtype=bool))
            finite = values[np.isfinite(values) & ~self._left_out]
            if finite.size == 0:
                self._vmin = self._vmax = 0.0
            elif grid.centered:
                m = float(np.abs(finite).max())
                self._vmin, self._vmax = -m, m
            else:
                self._vmin, self._vmax = float(finite.min()), float(finite.max())
            self._level_grid = self._levels(np.where(self._left_out, np.nan, values))
            R, C = values.shape
            self.cursor_row = min(self.cursor_row, R - 1)
            self.cursor_col = min(self.cursor_col, C - 1)
        self.refresh()

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return DIVERGING if self.grid is None or self.grid.centered else SEQUENTIAL

    @property
    def cursor_value(self) -> float:
        if self.grid is None:
            return float("nan")
        return float(self.grid.values[self.cursor_row, self.cursor_col])

    @property
    def status_text(self) -> str:
        """The line under the map: the cursor's labels and value."""
        g = self.grid
        if g is None:
            return self.empty_text
        text = (f"{g.row_axis}={g.row_labels[self.cursor_row]}  {g.col_axis}={g.col_labels[self.cursor_col]}"
                f"  {format_value(self.cursor_value)}")
        if self._left_out[self.cursor_row, self.cursor_col]:
            text += "  (left out of the colours)"
        return text

    @property
    def view_text(self) -> str:
        """Which rows and columns the view shows when the grid is larger than the widget
        (every value at full resolution, never averaged); '' when it all fits."""
        g, lay = self.grid, self._get_layout()
        if g is None or lay is None:
            return ""
        R, C = g.values.shape
        (r0, r1), (c0, c1) = self.visible_rows, self.visible_cols
        spans = []
        if lay.view_rows < R:
            spans.append((g.row_axis, g.row_labels[r0], g.row_labels[r1 - 1], R))
        if lay.view_cols < C:
            spans.append((g.col_axis, g.col_labels[c0], g.col_labels[c1 - 1], C))
        if not spans:
            return ""
        text = "in view: " + ", ".join(f"{a} {lo}..{hi} of {n}" for a, lo, hi, n in spans) + " · arrows scroll"
        if len(text) > self.size.width > 0:  # a narrow map: the short form, never cut
            text = " ".join(f"{a} {lo}..{hi}/{n}" for a, lo, hi, n in spans)
        return text

    @property
    def visible_rows(self) -> tuple[int, int]:
        """[first, last) grid rows in the view."""
        lay = self._get_layout()
        if self.grid is None or lay is None:
            return (0, 0)
        return (self.view_row, min(self.view_row + lay.view_rows, self.grid.values.shape[0]))

    @property
    def visible_cols(self) -> tuple[int, int]:
        """[first, last) grid columns in the view."""
        lay = self._get_layout()
        if self.grid is None or lay is None:
            return (0, 0)
        return (self.view_col, min(self.view_col + lay.view_cols, self.grid.values.shape[1]))

    def _levels(self, values: np.ndarray) -> np.ndarray:
        """Colour level 0..N_LEVELS-1 of each value, -1 where NaN."""
        lo, hi = self._vmin, self._vmax
        span = hi - lo
        with np.errstate(invalid="ignore"):
            t = np.full(values.shape, 0.5) if span <= 0 else (values - lo) / span
            lev = np.rint(np.clip(t, 0, 1) * (N_LEVELS - 1))
        lev[~np.isfinite(values)] = -1
        return lev.astype(int)

    # -- layout ---------------------------------------------------------------------------
    def _corner(self, gutter: int | None = None) -> str:
        """``row\\col`` in the top-left corner, or the row axis alone when that is too wide
        for the gutter (the column axis then follows the ticks)."""
        assert self.grid is not None
        both = f"{self.grid.row_axis}\\{self.grid.col_axis}"
        return both if gutter is None or len(both) < gutter else self.grid.row_axis

    def _get_layout(self) -> _Layout | None:
        g = self.grid
        width, height = self.size
        if g is None or width <= 0:
            return None
        key = (id(g), width, height)
        if key == self._layout_key:
            return self._layout
        R, C = g.values.shape
        label_w = max((len(str(x)) for x in g.row_labels), default=1)
        both = len(g.row_axis) + 1 + len(g.col_axis)
        # room for "row\\col" when it costs at most 4 columns more than the labels need
        gutter = min(max(label_w, len(g.row_axis), both if both <= label_w + 4 else 0), 14) + 1
        map_w = max(width - gutter, 1)
        lines = max(height - 4, 1)  # title, ticks, status, and a spare line for the legend
        if 2 * C <= map_w and R <= lines:
            # up to max_cell_w characters per value while the grid fits (a small grid of
            # long labels, a sweep's phase diagram); 2 (a square) by default
            cell_w, half = max(2, min(self.max_cell_w, map_w // max(C, 1))), False
        else:  # half blocks, scrolling over what does not fit
            cell_w, half = 1, True
            if C > map_w or R > 2 * lines:
                lines = max(lines - 1, 1)  # and a line saying what is in view
        view_rows = min(R, 2 * lines if half else lines)
        view_cols = min(C, map_w // cell_w)
        map_lines = -(-view_rows // 2) if half else view_rows
        col_w = max((len(str(x)) for x in g.col_labels), default=1)
        self._layout = _Layout(gutter, cell_w, half, view_rows, view_cols, map_lines,
                               tick_step(col_w, cell_w))
        self._layout_key = key
        self._clamp_view(self._layout)
        return self._layout

    def _clamp_view(self, lay: _Layout) -> None:
        """Keep the view inside the grid and the cursor inside the view. In half-block mode
        the top row stays even, so a line always pairs the same two rows."""
        row = min(max(self.view_row, self.cursor_row - lay.view_rows + 1), self.cursor_row)
        col = min(max(self.view_col, self.cursor_col - lay.view_cols + 1), self.cursor_col)
        if lay.half and row % 2:  # down to the cursor's line when scrolling up, else up
            row += -1 if row == self.cursor_row else 1
        self._set_view(lay, row, col)

    def _set_view(self, lay: _Layout, row: int, col: int) -> None:
        assert self.grid is not None
        R, C = self.grid.values.shape
        last_row = R - lay.view_rows
        if lay.half:
            row, last_row = row - row % 2, last_row + last_row % 2
        self.view_row = min(max(row, 0), max(last_row, 0))
        self.view_col = min(max(col, 0), max(C - lay.view_cols, 0))

    def _style(self, fg: int, bg: int) -> Style:
        """A style with palette colours (-1: none) for foreground and background."""
        key = (fg, bg)
        style = self._styles.get(key)
        if style is None:
            pal = self.palette
            style = Style(color=Color.from_rgb(*pal[fg]) if fg >= 0 else None,
                          bgcolor=Color.from_rgb(*pal[bg]) if bg >= 0 else None)
            self._styles[key] = style
        return style

    def on_resize(self, event: events.Resize) -> None:
        self._layout_key = None
        self.refresh()

    # -- rendering ------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        lay = self._get_layout()
        if self.grid is None or lay is None:
            if y == 0:
                return self._text_strip(self.empty_text, self.get_component_rich_style("heatmap--axis"), width)
            return Strip.blank(width, base)
        if y == 0:
            return self._with_legend(self._title_strip(width), lay, y, width)
        if y == 1:
            return self._with_legend(self._ticks_strip(lay, width), lay, y, width)
        if 2 <= y < 2 + lay.map_lines:
            return self._map_strip(lay, y - 2, width)
        status_style = self.get_component_rich_style("heatmap--status")
        if y == 2 + lay.map_lines:
            return self._with_legend(self._text_strip(self.status_text, status_style, width), lay, y, width)
        if y == 3 + lay.map_lines:
            axis_style = self.get_component_rich_style("heatmap--axis")
            return self._with_legend(self._text_strip(self.view_text, axis_style, width), lay, y, width)
        return self._with_legend(Strip.blank(width, base), lay, y, width)

    def _text_strip(self, text: str, style: Style, width: int) -> Strip:
        return Strip([Segment(text[:width], style)]).extend_cell_length(width, self.rich_style).crop(0, width)

    def _legend(self) -> list[Segment]:
        """``lo ▇▇▇▇▇▇ hi``: the colour bar with the ends of the scale."""
        axis_style = self.get_component_rich_style("heatmap--axis")
        bar_w = 6
        segments = [Segment(format_value(self._vmin) + " ", axis_style)]
        for i in range(bar_w):
            segments.append(Segment(" ", self._style(-1, round(i * (N_LEVELS - 1) / (bar_w - 1)))))
        segments.append(Segment(" " + format_value(self._vmax), axis_style))
        return segments

    def _legend_line(self, lay: _Layout, width: int) -> int | None:
        """Which line has room for the legend right-aligned: the title's, the ticks', the
        status', the view's."""
        need = sum(seg.cell_length for seg in self._legend()) + 2
        used = {0: len(self._title_text()) + 2,
                1: max(len(self._ticks_text(lay)), lay.gutter + lay.view_cols * lay.cell_w),
                2 + lay.map_lines: len(self.status_text), 3 + lay.map_lines: len(self.view_text)}
        for y, n in used.items():
            if n + need <= width:
                return y
        spare = 4 + lay.map_lines if self.view_text else 3 + lay.map_lines  # a line of its own
        return spare if spare < self.size.height else None

    def _with_legend(self, strip: Strip, lay: _Layout, y: int, width: int) -> Strip:
        if self._legend_line(lay, width) != y:
            return strip
        legend = Strip(self._legend())
        return Strip.join([strip.crop(0, width - legend.cell_length), legend])

    def _title_text(self) -> str:
        assert self.grid is not None
        title = self.grid.title or self.grid.name
        return f"{title} · {self.note}" if self.note else title

    def _title_strip(self, width: int) -> Strip:
        title = self._title_text()
        room = max(width - 2, 0)
        if len(title) > room:  # cut where it must be, and visibly so
            title = title[: max(room - 1, 0)] + "…"
        strip = Strip([Segment(f" {title} ", self.get_component_rich_style("heatmap--title"))])
        return strip.extend_cell_length(width, self.rich_style).crop(0, width)

    def _ticks_text(self, lay: _Layout) -> str:
        """Corner, then the label of every ``tick_step``-th column in view, each whole."""
        assert self.grid is not None
        corner = self._corner(lay.gutter)
        text = corner[: lay.gutter - 1].rjust(lay.gutter - 1) + " "
        axis = f"  ({self.grid.col_axis})" if corner == self.grid.row_axis else ""
        c0, c1 = self.visible_cols
        room = max(self.size.width - lay.gutter - len(axis), 0)
        chars = [" "] * room
        first = -(-c0 // lay.tick_step) * lay.tick_step
        for col in range(first, c1, lay.tick_step):
            label = str(self.grid.col_labels[col])
            x = (col - c0) * lay.cell_w
            if x + len(label) <= room:  # never a cut label (108 is not "10")
                chars[x:x + len(label)] = label
        return text + "".join(chars).rstrip() + axis

    def _ticks_strip(self, lay: _Layout, width: int) -> Strip:
        return self._text_strip(self._ticks_text(lay), self.get_component_rich_style("heatmap--axis"), width)

    def _map_strip(self, lay: _Layout, line: int, width: int) -> Strip:
        assert self.grid is not None
        axis_style = self.get_component_rich_style("heatmap--axis")
        R = self.grid.values.shape[0]
        c0, c1 = self.visible_cols
        rows = [self.view_row + 2 * line, self.view_row + 2 * line + 1] if lay.half else [self.view_row + line]
        if rows[0] >= R:
            return Strip.blank(width, self.rich_style)
        # Gutter: the row label of the first row on this line, or the cursor's row label.
        if self.cursor_row in rows:
            label = str(self.grid.row_labels[self.cursor_row])
            label_style = self.get_component_rich_style("heatmap--cursor-label")
        else:
            label = str(self.grid.row_labels[rows[0]])
            label_style = axis_style
        label = label[: lay.gutter - 1].rjust(lay.gutter - 1)
        segments = [Segment(label, label_style), Segment(" ", self.rich_style)]
        top = self._level_grid[rows[0], c0:c1]
        bottom = self._level_grid[rows[1], c0:c1] if lay.half and rows[1] < R else None
        cur_c = self.cursor_col - c0
        for j in range(c1 - c0):
            t = int(top[j])
            if lay.half:
                b = int(bottom[j]) if bottom is not None else -1
                if j == cur_c and self.cursor_row == rows[0]:
                    t = -2
                elif j == cur_c and self.cursor_row == rows[1]:
                    b = -2
                segments.append(self._half_segment(t, b))
            elif j == cur_c and self.cursor_row == rows[0]:
                segments.append(Segment("[" + " " * (lay.cell_w - 2) + "]", self._cursor_style(t)))
            else:
                segments.append(Segment(" " * lay.cell_w, self._style(-1, t) if t >= 0 else self.rich_style))
        return Strip(segments).extend_cell_length(width, self.rich_style).crop(0, width)

    def _cursor_colour(self, level: int) -> Color:
        """Black or white, whichever stands out on the colour of ``level``."""
        if level < 0:
            return Color.parse("white")
        r, g, b = self.palette[level]
        return Color.parse("black") if 0.299 * r + 0.587 * g + 0.114 * b > 140 else Color.parse("white")

    def _cursor_style(self, level: int) -> Style:
        bg = Color.from_rgb(*self.palette[level]) if level >= 0 else None
        return Style(color=self._cursor_colour(level), bgcolor=bg, bold=True)

    def _half_segment(self, top: int, bottom: int) -> Segment:
        """One character showing two rows: '▀' in the top colour over the bottom colour.

        Level -1 is NaN (blank), -2 the cursor (drawn in a contrasting colour).
        """
        if top == -2 or bottom == -2:
            other = bottom if top == -2 else top
            cursor = self._cursor_colour(other)
            other_colour = Color.from_rgb(*self.palette[other]) if other >= 0 else None
            if top == -2:
                return Segment("▀", Style(color=cursor, bgcolor=other_colour))
            return Segment("▄", Style(color=cursor, bgcolor=other_colour))
        if top < 0 and bottom < 0:
            return Segment(" ", self.rich_style)
        if top < 0:
            return Segment("▄", self._style(bottom, -1))
        return Segment("▀", self._style(top, bottom))

    # -- interaction ----------------------------------------------------------------------
    def move_cursor(self, row: int, col: int) -> None:
        """Put the cursor on ``values[row, col]`` (clamped), scroll the view to it and post
        CursorMoved."""
        if self.grid is None:
            return
        R, C = self.grid.values.shape
        row, col = min(max(row, 0), R - 1), min(max(col, 0), C - 1)
        if (row, col) == (self.cursor_row, self.cursor_col):
            return
        self.cursor_row, self.cursor_col = row, col
        lay = self._get_layout()
        if lay is not None:
            self._clamp_view(lay)
        self.refresh()
        self.post_message(self.CursorMoved(self, row, col, self.cursor_value))

    def action_move(self, d_row: int, d_col: int) -> None:
        self.move_cursor(self.cursor_row + d_row, self.cursor_col + d_col)

    def action_jump(self, where: str) -> None:
        if self.grid is None:
            return
        R, C = self.grid.values.shape
        self.move_cursor(*((0, 0) if where == "first" else (R - 1, C - 1)))

    def _scroll_view(self, d_row: int, d_col: int) -> None:
        """The mouse wheel moves the view (the cursor stays on its value)."""
        lay = self._get_layout()
        if lay is not None:
            self._set_view(lay, self.view_row + d_row, self.view_col + d_col)
            self.refresh()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._scroll_view(2, 0)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._scroll_view(-2, 0)

    def on_mouse_scroll_right(self, event: events.MouseScrollRight) -> None:
        event.stop()
        self._scroll_view(0, 4)

    def on_mouse_scroll_left(self, event: events.MouseScrollLeft) -> None:
        event.stop()
        self._scroll_view(0, -4)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        lay = self._get_layout()
        if offset is None or lay is None or self.grid is None:
            return
        line, x = offset.y - 2, offset.x - lay.gutter
        if not (0 <= line < lay.map_lines and x >= 0):
            return
        j = self.view_col + x // lay.cell_w
        i = self.view_row + (2 * line if lay.half else line)
        if lay.half and self.cursor_row == i and self.cursor_col == j:
            i += 1  # a second click on the same character selects its lower row
        R, C = self.grid.values.shape
        if j >= min(C, self.view_col + lay.view_cols) or i >= R:
            return
        self.focus()
        self.move_cursor(i, j)
