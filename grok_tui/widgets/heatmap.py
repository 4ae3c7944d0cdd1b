"""A colour map of a grok_engine Grid with labelled axes and a keyboard cursor.

Layout, top to bottom (one terminal line each unless said)::

     title                                 <- bold; accent background while focused
    a\\b 0 1 2 3 4 5 6    -0.52 ▇▇▇▇▇▇ 0.52 <- corner (row\\col axis), column ticks; the colour
      0 [][][][][][][]                        bar goes on the first of these lines with room
      ...                                  <- the map: one line per row, or half a line
    a=3  b=5  0.1234                       <- the value under the cursor ("[]" on the map)

Each value is drawn as a 2-character square when the grid fits, else with half blocks
('▀', foreground = upper row, background = lower row) so two rows share one line; a grid
too large even for that (113 x 113 at 80 x 24) is averaged over blocks of cells
(NaN-aware) and the status line says so. The cursor always addresses one value of the
original grid (the arrows move it one value), so exact values stay reachable when the map
is downsampled. Lines are built as Rich Segments in :meth:`render_line`: no child widgets.

Colours: a diverging blue-white-red map centred at zero when ``grid.centered`` (the scale is
symmetric, +-max|value|), else viridis from min to max. NaN (e.g. b = 0 in mod_div) is blank.
"""

from __future__ import annotations

import math
import warnings
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


def format_value(value: Any) -> str:
    """Compact display of one number (4 significant digits); NaN as 'NaN'."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def block_mean(values: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Average ``values`` [R, C] over blocks of fy x fx cells, ignoring NaN.

    Returns [ceil(R/fy), ceil(C/fx)]; a block with no finite value is NaN.
    """
    R, C = values.shape
    if fy == 1 and fx == 1:
        return values.astype(float)
    Rd, Cd = -(-R // fy), -(-C // fx)
    padded = np.full((Rd * fy, Cd * fx), np.nan)
    padded[:R, :C] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks are expected
        return np.nanmean(padded.reshape(Rd, fy, Cd, fx), axis=(1, 3))


@dataclass(frozen=True)
class _Layout:
    """How the grid maps onto the widget's cells for one size."""

    gutter: int  # columns left of the map (row labels), including one space
    cell_w: int  # characters per displayed value (2 = square, 1 with half blocks)
    half: bool  # two display rows per terminal line
    fy: int  # original rows averaged into one display row
    fx: int  # original columns averaged into one display column
    levels: np.ndarray  # [Rd, Cd] colour level per display cell, -1 = NaN
    map_lines: int  # terminal lines the map uses

    @property
    def downsampled(self) -> bool:
        return self.fy > 1 or self.fx > 1


class Heatmap(Widget, can_focus=True):
    """Draws a :class:`grok_engine.results.Grid`; arrows move the cursor, click selects."""

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
        self.cursor_row = 0
        self.cursor_col = 0
        self._layout_key: tuple[Any, ...] | None = None
        self._layout: _Layout | None = None
        self._vmin = 0.0
        self._vmax = 0.0
        self._styles: dict[tuple[int, int], Style] = {}
        if grid is not None:
            self.set_grid(grid)

    # -- data -----------------------------------------------------------------------------
    def set_grid(self, grid: Grid | None) -> None:
        """Show ``grid`` (None clears). The cursor keeps its place when it still fits."""
        self.grid = grid
        self._layout_key = None
        self._styles.clear()  # the palette depends on grid.centered
        if grid is not None:
            values = np.asarray(grid.values, dtype=float)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                self._vmin = self._vmax = 0.0
            elif grid.centered:
                m = float(np.abs(finite).max())
                self._vmin, self._vmax = -m, m
            else:
                self._vmin, self._vmax = float(finite.min()), float(finite.max())
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
        """The line under the map: the cursor's labels and value (plus a downsampling note)."""
        g = self.grid
        if g is None:
            return self.empty_text
        text = (f"{g.row_axis}={g.row_labels[self.cursor_row]}  {g.col_axis}={g.col_labels[self.cursor_col]}"
                f"  {format_value(self.cursor_value)}")
        lay = self._layout
        if lay is not None and lay.downsampled:
            R, C = g.values.shape
            text += f"   ({R}x{C} shown as {lay.levels.shape[0]}x{lay.levels.shape[1]}: mean of {lay.fy}x{lay.fx})"
        return text

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
            cell_w, half, fy, fx = 2, False, 1, 1
        elif C <= map_w and R <= 2 * lines:
            cell_w, half, fy, fx = 1, True, 1, 1
        else:
            cell_w, half = 1, True
            fx = max(1, -(-C // map_w))
            fy = max(1, -(-R // (2 * lines)))
        levels = self._levels(block_mean(np.asarray(g.values, dtype=float), fy, fx))
        map_lines = -(-levels.shape[0] // 2) if half else levels.shape[0]
        self._layout = _Layout(gutter, cell_w, half, fy, fx, levels, map_lines)
        self._layout_key = key
        return self._layout

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
        if y == 2 + lay.map_lines:
            status = self._text_strip(self.status_text, self.get_component_rich_style("heatmap--status"), width)
            return self._with_legend(status, lay, y, width)
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
        """Which line has room for the legend right-aligned: the title's, the ticks', the status'."""
        assert self.grid is not None
        need = sum(seg.cell_length for seg in self._legend()) + 2
        title = self.grid.title or self.grid.name
        used = {0: len(title) + 2, 1: max(len(self._ticks_text(lay)), lay.gutter + lay.levels.shape[1] * lay.cell_w),
                2 + lay.map_lines: len(self.status_text)}
        for y, n in used.items():
            if n + need <= width:
                return y
        spare = 3 + lay.map_lines  # its own line under the status line
        return spare if spare < self.size.height else None

    def _with_legend(self, strip: Strip, lay: _Layout, y: int, width: int) -> Strip:
        if self._legend_line(lay, width) != y:
            return strip
        legend = Strip(self._legend())
        return Strip.join([strip.crop(0, width - legend.cell_length), legend])

    def _title_strip(self, width: int) -> Strip:
        assert self.grid is not None
        title = self.grid.title or self.grid.name
        strip = Strip([Segment(f" {title[: max(width - 2, 0)]} ", self.get_component_rich_style("heatmap--title"))])
        return strip.extend_cell_length(width, self.rich_style).crop(0, width)

    def _ticks_text(self, lay: _Layout) -> str:
        """Corner, then a column label every few display columns (first column of a block)."""
        assert self.grid is not None
        corner = self._corner(lay.gutter)
        text = corner[: lay.gutter - 1].rjust(lay.gutter - 1) + " "
        Cd = lay.levels.shape[1]
        labels = [str(self.grid.col_labels[j * lay.fx]) for j in range(Cd)]
        longest = max((len(s) for s in labels), default=1)
        step = max(1, -(-(longest + 1) // lay.cell_w))  # display columns between ticks
        chars = [" "] * (Cd * lay.cell_w)
        for j in range(0, Cd, step):
            x = j * lay.cell_w
            for k, ch in enumerate(labels[j]):
                if x + k < len(chars):
                    chars[x + k] = ch
        text += "".join(chars).rstrip()
        if corner == self.grid.row_axis:
            text += f"  ({self.grid.col_axis})"
        return text

    def _ticks_strip(self, lay: _Layout, width: int) -> Strip:
        return self._text_strip(self._ticks_text(lay), self.get_component_rich_style("heatmap--axis"), width)

    def _map_strip(self, lay: _Layout, line: int, width: int) -> Strip:
        assert self.grid is not None
        axis_style = self.get_component_rich_style("heatmap--axis")
        levels = lay.levels
        Rd, Cd = levels.shape
        cur_r, cur_c = self.cursor_row // lay.fy, self.cursor_col // lay.fx
        rows = [2 * line, 2 * line + 1] if lay.half else [line]
        # Gutter: the row label of the first row on this line, or the cursor's row label.
        if cur_r in rows:
            label = str(self.grid.row_labels[self.cursor_row])
            label_style = self.get_component_rich_style("heatmap--cursor-label")
        else:
            label = str(self.grid.row_labels[rows[0] * lay.fy])
            label_style = axis_style
        label = label[: lay.gutter - 1].rjust(lay.gutter - 1)
        segments = [Segment(label, label_style), Segment(" ", self.rich_style)]
        top = levels[rows[0]]
        bottom = levels[rows[1]] if lay.half and rows[1] < Rd else None
        for j in range(Cd):
            t = int(top[j])
            if lay.half:
                b = int(bottom[j]) if bottom is not None else -1
                if j == cur_c and cur_r == rows[0]:
                    t = -2
                elif j == cur_c and cur_r == rows[1]:
                    b = -2
                segments.append(self._half_segment(t, b))
            else:
                if j == cur_c and cur_r == rows[0]:
                    segments.append(Segment("[]", self._cursor_style(t)))
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
        """Put the cursor on ``values[row, col]`` (clamped) and post CursorMoved."""
        if self.grid is None:
            return
        R, C = self.grid.values.shape
        row, col = min(max(row, 0), R - 1), min(max(col, 0), C - 1)
        if (row, col) == (self.cursor_row, self.cursor_col):
            return
        self.cursor_row, self.cursor_col = row, col
        self.refresh()
        self.post_message(self.CursorMoved(self, row, col, self.cursor_value))

    def action_move(self, d_row: int, d_col: int) -> None:
        self.move_cursor(self.cursor_row + d_row, self.cursor_col + d_col)

    def action_jump(self, where: str) -> None:
        if self.grid is None:
            return
        R, C = self.grid.values.shape
        self.move_cursor(*((0, 0) if where == "first" else (R - 1, C - 1)))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        lay = self._get_layout()
        if offset is None or lay is None:
            return
        line, x = offset.y - 2, offset.x - lay.gutter
        if not (0 <= line < lay.map_lines and x >= 0):
            return
        j = x // lay.cell_w
        i = 2 * line if lay.half else line
        if lay.half and self.cursor_row // lay.fy == i:
            i += 1  # a second click on the same character selects its lower row
        if j >= lay.levels.shape[1] or i >= lay.levels.shape[0]:
            return
        self.focus()
        self.move_cursor(i * lay.fy, j * lay.fx)
