"""The run picker: every run and every sweep in the runs folder, one row each.

A run's row (RunStore.summaries()) shows its task, epochs, accuracies and grokking epoch
and the hyperparameters that tell two runs of one task apart: lr, weight decay,
frac_train, Grokfast, and the sweep it belongs to. A sweep's row (sweep.json) shows its
members done and, for a grid axis, "grid" in that axis's column; Enter opens the sweep
screen. ``/`` filters as you type (every word must appear in some cell: task, id, any
value); ``S`` sorts by the next column, ``R`` reverses, a click on a header sorts by it.
The picker opens with the cursor on the run that is open. Space marks runs; ``c`` opens
the comparison of the marked ones (2-8).

A run that cannot be read is listed too, marked "unreadable", with one line below the
table naming the file and the problem (Enter still tries it: a run with bad metrics opens
its checkpoints; one without a readable config is refused with its reason and the picker
comes back). Run ids, paths and error texts are shown as plain text, never as markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from grok_tui.widgets.footer import Footer

NEW_RUN = "\0new"  # returned by dismiss when the user asks for the new-run form
MARK = "●"
COMPARE_MIN, COMPARE_MAX = 2, 8
# the hyperparameters before the accuracies: at 80 columns they are what tells runs apart
COLUMNS = ("", "run", "task", "p", "epochs", "lr", "wd", "frac", "grokfast", "sweep", "train acc",
           "test acc", "grokked at")
GRID = "grid"  # a sweep's cell for a flag that is one of its axes


@dataclass(frozen=True)
class OpenSweep:
    """The picker's answer: open the sweep screen of ``sweep_id``."""

    sweep_id: str


@dataclass(frozen=True)
class CompareRuns:
    """The picker's answer: compare these runs (2-8)."""

    run_ids: tuple[str, ...]


@dataclass
class PickerRow:
    """One row: a run (``summary`` a RunSummary) or a sweep (``kind`` "sweep").
    ``params``: lr, weight_decay, frac_train, grokfast (None: unknown, GRID: a sweep axis)."""

    kind: str
    id: str
    summary: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    sweep_id: str = ""
    members_done: int = 0
    members: int = 0
    task: str = "?"
    p: int = 0


PARAMS = ("lr", "weight_decay", "frac_train", "grokfast")


def _params(config: Any) -> dict[str, Any]:
    return {"lr": config.train.lr, "weight_decay": config.train.weight_decay,
            "frac_train": config.task.frac_train, "grokfast": config.train.grokfast}


def picker_rows(store: Any) -> list[PickerRow]:
    """The rows of every sweep then every run of ``store`` (a RunStore); reads files: call
    it off the UI thread. A sweep.json that cannot be read is left out of the list (its
    members are still listed as runs)."""
    from grok_engine.errors import GrokError
    from grok_engine.sweep.store import SweepStore

    rows: list[PickerRow] = []
    sweeps = SweepStore(store.root)
    for sweep_id in sweeps.sweep_ids():
        try:
            sweep = sweeps.open(sweep_id)
            base = sweep.base_config()
        except GrokError:
            continue
        axes = {a.get("flag", "").replace("-", "_") for a in sweep.axes}
        params = {k: (GRID if k in axes else v) for k, v in _params(base).items()}
        done = sum(s == "done" for s in sweeps.statuses(sweep))
        rows.append(PickerRow("sweep", sweep_id, params=params, members_done=done,
                              members=len(sweep.members), task=base.task.task, p=base.task.p))
    for s in store.summaries():
        row = PickerRow("run", s.id, s, task=s.task, p=s.p)
        if not s.error:
            try:
                run = store.open(s.id)
                row.params = _params(run.config)
                sweep = run.info.get("sweep")
                row.sweep_id = str(sweep.get("id", "")) if isinstance(sweep, dict) else ""
            except GrokError:
                pass
        rows.append(row)
    return rows


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def _param_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def row_cells(s: Any) -> list[str]:
    """The picker's run cells of one RunSummary (a run that cannot be read: "unreadable"),
    run id to grokked at."""
    if s.error:
        return [s.id, s.task, str(s.p or "?"), "unreadable", "-", "-", "-"]
    epochs = f"{s.epochs_done}/{s.epochs_planned}"
    if s.diverged_epoch is not None:
        epochs += f" diverged at {s.diverged_epoch}"
    return [s.id, s.task, str(s.p), epochs, _pct(s.train_acc),
            _pct(s.test_acc), "-" if s.grok_epoch is None else str(s.grok_epoch)]


def picker_cells(row: PickerRow) -> list[str]:
    """Every cell of a row but the mark, in COLUMNS order."""
    if row.kind == "sweep":
        head = [row.id, row.task, str(row.p), f"{row.members_done}/{row.members} done", "-", "-", "-"]
        sweep = "(sweep)"
    else:
        head = row_cells(row.summary)
        sweep = row.sweep_id or "-"
    return head[:4] + [_param_cell(row.params.get(k)) for k in PARAMS] + [sweep] + head[4:]


def sort_key(row: PickerRow, column: int) -> tuple[int, Any]:
    """What column ``column`` (of COLUMNS, the mark being 0) sorts by: the raw number where
    there is one (accuracies, epochs, lr), else the text; blanks last."""
    name = COLUMNS[column]
    s = row.summary
    raw: Any = None
    if name in ("lr", "wd", "frac", "grokfast"):
        raw = row.params.get(PARAMS[("lr", "wd", "frac", "grokfast").index(name)])
    elif s is not None and not s.error and name in ("p", "epochs", "train acc", "test acc", "grokked at"):
        raw = {"p": s.p, "epochs": s.epochs_done, "train acc": s.train_acc, "test acc": s.test_acc,
               "grokked at": s.grok_epoch}[name]
    elif name == "p":
        raw = row.p
    if isinstance(raw, (int, float)) and not (isinstance(raw, float) and math.isnan(raw)):
        return (0, float(raw))
    text = picker_cells(row)[column - 1] if column else ""
    return (1 if text not in ("", "-") else 2, text)


def words_match(cells: list[str], query: str) -> bool:
    """Every word of ``query`` appears (case-insensitive) in some of ``cells``: the filter
    of the picker and of the sweep's members table."""
    lowered = [c.lower() for c in cells]
    return all(any(word in c for c in lowered) for word in query.lower().split())


def matches(row: PickerRow, query: str) -> bool:
    return words_match(picker_cells(row), query)


def compare_problem(n_marked: int, what: str = "runs") -> str | None:
    """Why ``n_marked`` marked runs cannot be compared (COMPARE_MIN to COMPARE_MAX), or None."""
    if COMPARE_MIN <= n_marked <= COMPARE_MAX:
        return None
    return f"mark {COMPARE_MIN} to {COMPARE_MAX} {what} with space to compare them ({n_marked} marked)"


class RunPickerScreen(Screen):
    """Enter opens the highlighted run or sweep, n opens the new-run form, space marks, c
    compares the marked runs, / filters, S/R sort."""

    HELP_NAME = "Runs"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "new", "New run"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("slash", "filter", "Filter"),
        Binding("S", "sort_next", "Sort"),
        Binding("R", "sort_reverse", "Reverse sort", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, rows: list[PickerRow], runs_dir: str = "", current: str | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.runs_dir = runs_dir
        self.current = current
        self.marked: list[str] = []  # in the order marked: the comparison's order
        self.sort_column: int | None = None
        self.reverse = False
        self.query_text = ""

    @property
    def summaries(self) -> list[Any]:
        return [r.summary for r in self.rows if r.kind == "run"]

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Input(placeholder="/ filter: task, id, any value", id="picker-filter", compact=True)
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="picker-problems", classes="field-error")
            yield Static("", id="picker-note", classes="prompt-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#picker").border_title = Content(f"Runs in {self.runs_dir}")
        table = self.query_one(DataTable)
        for i, name in enumerate(COLUMNS):
            table.add_column(name, key=str(i))
        self.fill()
        bad = [s for s in self.summaries if s.error]
        problems = self.query_one("#picker-problems", Static)
        problems.update(Content("\n".join(f"unreadable run {s.id}: {s.error}" for s in bad)))
        problems.display = bool(bad)
        self.update_note()
        if self.current is not None:
            self.move_to(self.current)
        table.focus()

    # -- the rows shown ----------------------------------------------------------------
    def shown_rows(self) -> list[PickerRow]:
        rows = [r for r in self.rows if matches(r, self.query_text)] if self.query_text.strip() else list(self.rows)
        if self.sort_column is not None:  # blanks last either way
            keyed = [(sort_key(r, self.sort_column), r) for r in rows]
            filled = sorted((kr for kr in keyed if kr[0][0] < 2), key=lambda kr: kr[0], reverse=self.reverse)
            rows = [r for _k, r in filled] + [r for k, r in keyed if k[0] == 2]
        return rows

    def fill(self) -> None:
        """Rebuild the table from the filter and the sort, the cursor kept on its row."""
        table = self.query_one(DataTable)
        keep = self.cursor_id()
        table.clear()
        for row in self.shown_rows():
            mark = MARK if row.id in self.marked else ""
            table.add_row(Text(mark), *[Text(cell) for cell in picker_cells(row)], key=row.id)
        for i, (name, column) in enumerate(zip(COLUMNS, table.columns.values())):
            arrow = ("▼" if self.reverse else "▲") if i == self.sort_column else ""
            column.label = Text(name + arrow)
        table.refresh()
        if keep is not None:
            self.move_to(keep)

    def cursor_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def move_to(self, row_id: str) -> None:
        table = self.query_one(DataTable)
        try:
            table.move_cursor(row=table.get_row_index(row_id), animate=False)
        except Exception:  # noqa: BLE001 - filtered out: the cursor stays
            pass

    def update_note(self) -> None:
        runs = sum(r.kind == "run" for r in self.rows)
        sweeps = len(self.rows) - runs
        bad = sum(1 for s in self.summaries if s.error)
        note = f"{runs} runs" if runs else "no runs yet"
        if sweeps:
            note += f", {sweeps} sweeps"
        if bad:
            note += f" ({bad} unreadable)"
        shown = self.query_one(DataTable).row_count
        if shown != len(self.rows):
            note += f"  ·  {shown} shown"
        if self.marked:
            note += f"  ·  {len(self.marked)} marked"
        self.query_one("#picker-note", Static).update(
            Content(f"{note}  ·  Enter open  ·  space mark  ·  c compare  ·  / filter  ·  n new run"))

    # -- events ------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_text = event.value
        self.fill()
        self.update_note()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_row(event.row_key.value)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = event.column_index
        self.reverse = not self.reverse if column == self.sort_column else False
        self.sort_column = column
        self.fill()

    # -- actions -----------------------------------------------------------------------
    def open_row(self, row_id: str | None) -> None:
        row = next((r for r in self.rows if r.id == row_id), None)
        if row is None:
            return
        self.dismiss(OpenSweep(row.id) if row.kind == "sweep" else row.id)

    def action_open(self) -> None:
        self.open_row(self.cursor_id())

    def action_new(self) -> None:
        self.dismiss(NEW_RUN)

    def action_mark(self) -> None:
        row_id = self.cursor_id()
        row = next((r for r in self.rows if r.id == row_id), None)
        if row is None or row.kind != "run":
            self.notify("only runs can be marked for comparison", severity="warning")
            return
        if row_id in self.marked:
            self.marked.remove(row_id)
        else:
            self.marked.append(row_id)
        table = self.query_one(DataTable)
        table.update_cell(row_id, "0", Text(MARK if row_id in self.marked else ""))
        table.action_cursor_down()
        self.update_note()

    def action_compare(self) -> None:
        problem = compare_problem(len(self.marked))
        if problem:
            self.notify(problem, severity="warning")
            return
        self.dismiss(CompareRuns(tuple(self.marked)))

    def action_filter(self) -> None:
        self.query_one("#picker-filter", Input).focus()

    def action_sort_next(self) -> None:
        self.sort_column = 1 if self.sort_column is None else self.sort_column % (len(COLUMNS) - 1) + 1
        self.reverse = False
        self.fill()

    def action_sort_reverse(self) -> None:
        if self.sort_column is None:
            self.sort_column = 1
        self.reverse = not self.reverse
        self.fill()

    def action_back(self) -> None:
        filt = self.query_one("#picker-filter", Input)
        if filt.has_focus or filt.value:
            filt.value = ""
            self.query_one(DataTable).focus()
            return
        self.dismiss(None)
