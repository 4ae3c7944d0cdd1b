"""Attention pane: mean attention from '=' per head, and one head's map over (a, b).

Renders the "attention" study: table "mean_pattern" (head, to_a, to_b, to_eq), grids
"head{h}_to_a" / "head{h}_to_b" [a, b]. ``x`` / ``X`` cycle the head, ``t`` switches a/b.
"""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static

from grok_engine.results import Grid, StudyResult, Table
from grok_tui.panes.base import StudyPane, fmt_num
from grok_tui.widgets.heatmap import Heatmap
from grok_tui.widgets.result_table import ResultTable

_HEAD_GRID = re.compile(r"head(\d+)_to_(a|b)$")


class AttentionPane(StudyPane):
    STUDY = "attention"
    TITLE = "Attention"
    KEY = "3"

    BINDINGS = [
        # h/l step through checkpoints in the app: heads get x/X
        Binding("x", "next_head", "Next head"),
        Binding("X", "previous_head", "Previous head"),
        Binding("t", "toggle_target", "Attention to a/b"),
    ]

    DEFAULT_CSS = """
    AttentionPane #mean_pattern { width: auto; max-width: 50%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.head = 0
        self.target = "a"  # the key position: attention from '=' to a or to b

    def compose(self) -> ComposeResult:
        yield Static("waiting for a checkpoint", id="summary", classes="pane-summary")
        with Horizontal():
            yield ResultTable(id="mean_pattern")
            yield Heatmap(id="head_map", empty_text="no attention map")

    @property
    def heads(self) -> list[int]:
        """Heads that have a map in the result, ascending."""
        names = self.read().grid_names("head*_to_*")
        return sorted({int(m.group(1)) for name in names if (m := _HEAD_GRID.match(name))})

    def render_result(self, result: StudyResult) -> None:
        r = self.read(result)
        self.set_summary(f"Attention from '=' (layer {r.scalar('layer')}), mean over heads: "
                         f"a {fmt_num(r.scalar('mean_to_a'), 3)} · b {fmt_num(r.scalar('mean_to_b'), 3)} · "
                         f"= {fmt_num(r.scalar('mean_to_eq'), 3)}")
        self.query_one("#mean_pattern", ResultTable).set_table(r.table("mean_pattern"))
        heads = self.heads
        if heads and self.head not in heads:
            self.head = heads[0]
        self._show_map()

    def _show_map(self) -> None:
        grid = self.read().grid(f"head{self.head}_to_{self.target}")
        self.query_one("#head_map", Heatmap).set_grid(grid)

    def _step_head(self, step: int) -> None:
        heads = self.heads
        if not heads:
            return
        i = heads.index(self.head) if self.head in heads else 0
        self.head = heads[(i + step) % len(heads)]
        self._show_map()

    def action_next_head(self) -> None:
        self._step_head(1)

    def action_previous_head(self) -> None:
        self._step_head(-1)

    def action_toggle_target(self) -> None:
        self.target = "b" if self.target == "a" else "a"
        self._show_map()

    def default_export(self) -> Table | Grid | None:
        return self.read().table("mean_pattern")
