"""The run picker: every run in the runs folder, one row each (RunStore.summaries()).

A run that cannot be read is listed too, marked "unreadable", with one line below the
table naming the file and the problem (Enter still tries it: a run with bad metrics opens
its checkpoints; one without a readable config is refused with its reason and the picker
comes back). Run ids, paths and error texts are shown as plain text, never as markup.
"""

from __future__ import annotations

import math
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from rich.text import Text
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Static

from grok_tui.widgets.footer import Footer

NEW_RUN = "\0new"  # returned by dismiss when the user asks for the new-run form


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def row_cells(s: Any) -> list[str]:
    """The picker's cells of one RunSummary (a run that cannot be read: "unreadable")."""
    if s.error:
        return [s.id, s.task, str(s.p or "?"), "unreadable", "-", "-", "-"]
    epochs = f"{s.epochs_done}/{s.epochs_planned}"
    if s.diverged_epoch is not None:
        epochs += f" diverged at {s.diverged_epoch}"
    return [s.id, s.task, str(s.p), epochs, _pct(s.train_acc),
            _pct(s.test_acc), "-" if s.grok_epoch is None else str(s.grok_epoch)]


class RunPickerScreen(Screen):
    """Enter opens the highlighted run, n opens the new-run form."""

    HELP_NAME = "Runs"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "new", "New run"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, summaries: list[Any], runs_dir: str = "") -> None:
        super().__init__()
        self.summaries = summaries
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="picker-problems", classes="field-error")
            yield Static("", id="picker-note", classes="prompt-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#picker").border_title = Content(f"Runs in {self.runs_dir}")
        table = self.query_one(DataTable)
        table.add_columns("run", "task", "p", "epochs", "train acc", "test acc", "grokked at")
        for s in self.summaries:
            table.add_row(*[Text(cell) for cell in row_cells(s)], key=s.id)
        bad = [s for s in self.summaries if s.error]
        problems = self.query_one("#picker-problems", Static)
        problems.update(Content("\n".join(f"unreadable run {s.id}: {s.error}" for s in bad)))
        problems.display = bool(bad)
        note = f"{len(self.summaries)} runs" if self.summaries else "no runs yet"
        if bad:
            note += f" ({len(bad)} unreadable)"
        self.query_one("#picker-note", Static).update(Content(f"{note}  ·  Enter open  ·  n new run"))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(event.row_key.value)

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self.dismiss(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_new(self) -> None:
        self.dismiss(NEW_RUN)

    def action_back(self) -> None:
        self.dismiss(None)
