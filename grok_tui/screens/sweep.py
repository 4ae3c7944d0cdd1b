"""The sweep screen (``grok-tui SWEEP_ID``, or a sweep's row in the run picker): its phase
diagram beside a members table.

- **The phase diagram** (:func:`grok_engine.sweep.diagram.build_diagram`): a heatmap over
  two of the sweep's grid axes; ``x`` and ``y`` cycle the axes, ``f`` cycles the values
  the other axes are fixed at (seed axes are aggregated: median, spread in the cursor
  line), ``c`` cycles the colour: phase (a legend names the four classes), test-99% epoch
  (log), grokking delay, final test accuracy, final restricted loss (log). The line under
  the map and the panel below it show the cursor cell's member: its config and figures.
  Enter opens that member's run screen; Escape comes back.
- **The members table**: a row per member (:func:`grok_engine.sweep.summary.figures_table`),
  sorted with S / R, filtered with ``/`` (every word in some cell), Enter opens the
  member, space marks members and ``m`` compares the marked ones (2-8), ``e`` exports the
  table to CSV.

Members are read in a worker: first their metrics (the phases, the 99% epochs) and what
the progress study's cache holds, then the progress figures still missing are computed,
the diagram updating as they arrive. While some member is unfinished (the sweep trains
here or from the CLI) they are re-read every LIVE_INTERVAL_S, so the diagram fills in
live. ``t`` trains (or resumes) the unfinished members in a child process
(``grok-tui sweep --resume ID``); ``s`` stops it as Ctrl-C would: every member
checkpoints first and ``t`` resumes. Ids and values are data, never markup.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static

from grok_engine.results import Table
from grok_engine.sweep.diagram import COLOUR_MODES, LOG_MODES, MODE_TITLES, Diagram, build_diagram, fixed_choices
from grok_engine.sweep.phases import PHASES
from grok_engine.sweep.summary import format_key_frequencies
from grok_tui.screens.prompts import ExportScreen
from grok_tui.screens.run_picker import MARK, compare_problem, words_match
from grok_tui.widgets.footer import Footer
from grok_tui.widgets.heatmap import SEQUENTIAL, Heatmap, format_value
from grok_tui.widgets.result_table import ResultTable

EXPORTS_DIR = Path("exports")
LIVE_INTERVAL_S = 2.0  # between re-reads of the members while some are unfinished
# The four classes (Okabe-Ito: blue, orange, vermillion-ish purple, grey) in PHASES order.
PHASE_RGB = [(0, 158, 115), (230, 159, 0), (86, 180, 233), (150, 150, 150)]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format_value(value)


def member_line(fig: Any) -> str:
    """One member's figures on one line (the diagram's cursor)."""
    keys = format_key_frequencies(fig.key_frequencies)
    return (f"{fig.run_id}  {fig.phase or fig.status}  train99 {_fmt(fig.train_99)}  test99 {_fmt(fig.test_99)}"
            f"  delay {_fmt(fig.delay)}  test acc {_fmt(fig.test_acc)}  keys {keys}"
            f"  restricted {_fmt(fig.restricted_loss)}  |w|² {_fmt(fig.weight_norm)}")


class PhaseMap(Heatmap):
    """A Heatmap of a :class:`Diagram`: categorical colours and a phase legend in phase
    mode, a log colour bar in the log modes, the cursor cell's member under the map."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(empty_text="reading the members…", **kwargs)
        self.diagram: Diagram | None = None
        self.figures: list[Any] = []
        self.max_cell_w = 10  # a few values per axis, labels like 0.0001 under each

    def show(self, diagram: Diagram, figures: list[Any]) -> None:
        self.diagram, self.figures = diagram, figures
        aggregated = f"median over {', '.join(diagram.aggregated)}" if diagram.aggregated else ""
        fixed = "  ".join(f"{k}={_fmt(v)}" for k, v in diagram.fixed.items())
        self.set_grid(diagram.grid, note="  ".join(p for p in (fixed, aggregated) if p))

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        if self.diagram is not None and self.diagram.mode == "phase":
            return PHASE_RGB
        return SEQUENTIAL

    def _levels(self, values: np.ndarray) -> np.ndarray:
        if self.diagram is None or self.diagram.mode != "phase":
            return super()._levels(values)
        out = np.where(np.isfinite(values), values, -1)
        return out.astype(int)

    def cell_members(self) -> list[Any]:
        if self.diagram is None:
            return []
        return [self.figures[i] for i in self.diagram.cell(self.cursor_row, self.cursor_col).members]

    @property
    def status_text(self) -> str:
        d = self.diagram
        if d is None or self.grid is None:
            return super().status_text
        g = self.grid
        where = f"{g.col_axis}={g.col_labels[self.cursor_col]}"
        if d.y is not None:
            where = f"{g.row_axis}={g.row_labels[self.cursor_row]}  " + where
        cell = d.cell(self.cursor_row, self.cursor_col)
        if not cell.members:
            return f"{where}  no member"
        if d.mode == "phase":
            value = PHASES[int(cell.value)] if not math.isnan(cell.value) else "-"
            spread = f" ({cell.spread:.0%} of {len(cell.members)})" if len(cell.members) > 1 else ""
        else:
            shown = 10 ** cell.value if d.mode in LOG_MODES and not math.isnan(cell.value) else cell.value
            value = _fmt(shown)
            spread = ""
            if len(cell.members) > 1 and not math.isnan(cell.spread):
                spread = f" (median of {len(cell.members)}, range {_fmt(cell.spread)}"
                spread += " decades)" if d.mode in LOG_MODES else ")"
        first = self.figures[cell.members[0]].run_id
        more = f" +{len(cell.members) - 1}" if len(cell.members) > 1 else ""
        return f"{where}  {value}{spread}  {first}{more}"

    def _legend(self) -> list[Segment]:
        d = self.diagram
        if d is None:
            return super()._legend()
        axis_style = self.get_component_rich_style("heatmap--axis")
        if d.mode == "phase":
            # the phases' names whole where they fit (58 cells), else their first 5 letters
            width = sum(len(name) + 4 for name in PHASES)
            cut = None if width <= self.size.width else 5
            segments: list[Segment] = []
            for name, rgb in zip(PHASES, PHASE_RGB):
                segments += [Segment("  ", Style(bgcolor=Color.from_rgb(*rgb))),
                             Segment(f" {name[:cut]} ", axis_style)]
            return segments
        if self.grid is None or not np.isfinite(self.grid.values).any():
            return [Segment("no values yet", axis_style)]
        if d.mode in LOG_MODES:
            segments = super()._legend()
            segments[0] = Segment(format_value(10 ** self._vmin) + " ", axis_style)
            segments[-1] = Segment(" " + format_value(10 ** self._vmax), axis_style)
            return segments
        return super()._legend()


class MembersRead(Message):
    """Members' figures (all of them, in members order); ``final``: nothing more to come."""

    def __init__(self, figures: list[Any], final: bool, error: str = "") -> None:
        super().__init__()
        self.figures = figures
        self.final = final
        self.error = error


class SweepExported(Message):
    def __init__(self, path: Path | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.error = error


class MemberRunScreen:
    """Made on first use: RunScreen with Escape back to the sweep (run.py is not touched)."""

    _class: Any = None

    @classmethod
    def make(cls, store: Any, run: Any) -> Any:
        if cls._class is None:
            from grok_tui.screens.run import RunScreen

            class _MemberRunScreen(RunScreen):
                BINDINGS = [Binding("escape", "back_to_sweep", "Back to the sweep")]

                def action_back_to_sweep(self) -> None:
                    self.app.pop_screen()

            cls._class = _MemberRunScreen
        return cls._class(store, run)


class SweepScreen(Screen):
    """Escape leaves for the run picker."""

    HELP_NAME = "Sweep"
    BINDINGS = [
        Binding("x", "cycle_axis('x')", "x axis"),
        Binding("y", "cycle_axis('y')", "y axis"),
        Binding("c", "cycle_colour", "Colour"),
        Binding("f", "cycle_fixed", "Fixed values"),
        Binding("enter", "open_member", "Open member", show=False),
        Binding("space", "mark", "Mark", show=False),
        Binding("m", "compare", "Compare marked"),
        Binding("slash", "filter", "Filter"),
        Binding("e", "export", "Export CSV"),
        Binding("t", "train", "Train/resume"),
        Binding("s", "stop", "Stop", show=False),
        Binding("tab", "focus_next", "Diagram/table", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, store: Any, sweep_id: str) -> None:
        super().__init__()
        self.store = store
        self.sweep_id = sweep_id
        self.sweep: Any = None
        self.figures: list[Any] = []
        self.x: str = ""
        self.y: str | None = None
        self.mode = COLOUR_MODES[0]
        self.fixed_index = 0
        self.query_text = ""
        self.marked: list[str] = []
        self.diagram: Diagram | None = None
        self.trainer: Any = None  # the `grok-tui sweep --resume` child (subprocess.Popen) while it runs
        self._live: Any = None  # the timer that re-reads the members while some are unfinished
        self._polling = False

    def compose(self) -> ComposeResult:
        with Vertical(id="sweep"):
            yield Static("", id="sweep-title")
            with Horizontal(id="sweep-body"):
                with Vertical(id="sweep-left"):
                    yield PhaseMap(id="sweep-map")
                    yield Static("", id="sweep-member")
                with Vertical(id="sweep-right"):
                    yield Input(placeholder="/ filter members", id="sweep-filter", compact=True)
                    yield ResultTable(id="sweep-members")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sweep-title", Static).update(Content(f"sweep {self.sweep_id}  ·  reading…"))
        self.load()

    # -- reading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def load(self) -> None:
        from grok_engine.sweep.store import SweepStore
        from grok_engine.sweep.summary import sweep_figures

        try:
            self.sweep = SweepStore(self.store.root).open(self.sweep_id)
            figures = sweep_figures(self.store, self.sweep, compute=False)
            self.post_message(MembersRead(figures, final=False))
            missing = [f for f in figures if math.isnan(f.weight_norm) and f.epochs_done > 0]
            if missing:
                figures = sweep_figures(self.store, self.sweep, compute=True)
            self.post_message(MembersRead(figures, final=True))
        except Exception as exc:  # noqa: BLE001 - one line, the screen stays
            self.post_message(MembersRead([], True, str(exc) or type(exc).__name__))

    def on_members_read(self, message: MembersRead) -> None:
        if message.error:
            self.query_one("#sweep-title", Static).update(Content(f"sweep {self.sweep_id}: {message.error}"))
            self.notify(message.error, severity="error")
            return
        first = not self.figures
        self.figures = message.figures
        self._polling = False
        self._follow()
        flags = self.axis_flags()
        if first and flags:
            self.x = flags[0]
            self.y = flags[1] if len(flags) > 1 else None
        self.redraw()
        if first:
            self.query_one(PhaseMap).focus()

    # -- live fill-in, training --------------------------------------------------------
    def unfinished(self) -> bool:
        return any(f.status in ("not started", "partial") for f in self.figures)

    def _follow(self) -> None:
        """Re-read the members every LIVE_INTERVAL_S while some are unfinished (a sweep
        training here or from the CLI fills the diagram in); stop once all are finished
        and no child trains."""
        live = self.unfinished() or self.trainer is not None
        if live and self._live is None:
            self._live = self.set_interval(LIVE_INTERVAL_S, self._poll)
        elif not live and self._live is not None:
            self._live.stop()
            self._live = None
            self.load()  # the progress figures of the members just finished

    def _poll(self) -> None:
        if self.trainer is not None and self.trainer.poll() is not None:
            self._trainer_ended()
        if not self._polling and self.sweep is not None:
            self._polling = True
            self.read_live()

    @work(thread=True, exclusive=True, group="sweep-live", exit_on_error=False)
    def read_live(self) -> None:
        from grok_engine.sweep.summary import sweep_figures

        try:
            figures = sweep_figures(self.store, self.sweep, compute=False)
        except Exception as exc:  # noqa: BLE001
            self.post_message(MembersRead([], True, str(exc) or type(exc).__name__))
            return
        self.post_message(MembersRead(figures, final=False))

    def action_train(self) -> None:
        """Train (or resume) every unfinished member in a child ``grok-tui sweep --resume``."""
        if self.trainer is not None:
            self.notify("the sweep is training already (s stops it)")
            return
        if self.sweep is None or not self.unfinished():
            self.notify("every member is finished", severity="warning")
            return
        import grok_tui

        package_root = str(Path(grok_tui.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
        command = [sys.executable, "-m", "grok_tui.cli", "sweep", "--resume", self.sweep_id, "--quiet",
                   "--runs-dir", str(self.store.root)]
        try:
            self.trainer = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True, env=env)
        except OSError as exc:
            self.notify(f"cannot start training: {exc}", severity="error")
            return
        self.notify(f"training sweep {self.sweep_id} (s stops)")
        self._follow()
        self._draw_title()

    def action_stop(self) -> None:
        """Ask the child to checkpoint and return (its Ctrl-C): every member is kept."""
        if self.trainer is None:
            return
        self.trainer.send_signal(signal.SIGINT)
        self.notify("stopping: every member checkpoints first")

    def _trainer_ended(self) -> None:
        code = self.trainer.returncode
        err = (self.trainer.stderr.read() or "").strip().splitlines() if self.trainer.stderr else []
        self.trainer = None
        if code == 0:
            self.notify(f"sweep {self.sweep_id}: training ended")
        else:
            self.notify(f"sweep {self.sweep_id}: training exited with code {code}"
                        + (f": {err[-1]}" if err else ""), severity="warning" if code == 130 else "error")
        self._draw_title()

    def on_unmount(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:  # leave nothing training unseen
            self.trainer.send_signal(signal.SIGINT)

    def axis_flags(self) -> list[str]:
        return [a["flag"] for a in self.sweep.axes] if self.sweep is not None else []

    # -- drawing -------------------------------------------------------------------------
    def redraw(self, table: bool = True) -> None:
        """The diagram, title and cursor panel; the members table too unless ``table`` is
        False (an axis, colour or fixed value changes nothing in it)."""
        if self.sweep is None or not self.x:
            return
        choices = fixed_choices(self.sweep.axes, self.x, self.y)
        fixed = choices[self.fixed_index % len(choices)]
        self.diagram = build_diagram(self.sweep.axes, self.figures, self.x, self.y, self.mode, fixed,
                                     title=MODE_TITLES[self.mode])
        self.query_one(PhaseMap).show(self.diagram, self.figures)
        self._draw_title()
        self._draw_member()
        if table:
            self._draw_table()

    def _draw_title(self) -> None:
        done = sum(f.status == "done" for f in self.figures)
        y = f"  y {self.y}" if self.y else ""
        training = "  ·  training (s stops)" if self.trainer is not None else ""
        self.query_one("#sweep-title", Static).update(Content(
            f"sweep {self.sweep_id}  ·  {done}/{len(self.figures)} done{training}  ·  x {self.x}{y}  ·  "
            f"colour {self.mode}"))  # the keys are in the footer

    def _draw_member(self) -> None:
        members = self.query_one(PhaseMap).cell_members()
        text = "\n".join(member_line(f) for f in members[:3]) if members else ""
        if len(members) > 3:
            text += f"\n… and {len(members) - 3} more"
        self.query_one("#sweep-member", Static).update(Content(text))

    def grid_flags(self) -> list[str]:
        return self.axis_flags()

    def shown_figures(self) -> list[Any]:
        if not self.query_text.strip():
            return list(self.figures)
        flags = self.grid_flags()
        return [f for f in self.figures if words_match([str(v) for v in f.row(flags).values()], self.query_text)]

    def members_table(self) -> Table:
        from grok_engine.sweep.summary import figures_table

        table = figures_table(self.shown_figures(), self.grid_flags())
        marks = [MARK if run_id in self.marked else "" for run_id in table.columns["run"]]
        return Table(table.name, {"": marks, **table.columns}, title=table.title)

    def _draw_table(self) -> None:
        self.query_one("#sweep-members", ResultTable).set_table(self.members_table())

    # -- events --------------------------------------------------------------------------
    def on_heatmap_cursor_moved(self, event: Heatmap.CursorMoved) -> None:
        event.stop()
        self._draw_member()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_text = event.value
        self._draw_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#sweep-members", ResultTable).focus()

    def on_result_table_row_selected(self, event: ResultTable.RowSelected) -> None:
        event.stop()
        self.open_member(self._table_run_id())

    def _table_run_id(self) -> str | None:
        table = self.query_one("#sweep-members", ResultTable)
        if not table.row_count:
            return None
        return str(table.raw_row(table.cursor_row)["run"])

    # -- actions -------------------------------------------------------------------------
    def action_cycle_axis(self, which: str) -> None:
        flags = self.axis_flags()
        if len(flags) < (1 if which == "x" else 2):
            return
        other = self.y if which == "x" else self.x
        choices = [f for f in flags if f != other]
        current = self.x if which == "x" else self.y
        nxt = choices[(choices.index(current) + 1) % len(choices)] if current in choices else choices[0]
        if which == "x":
            self.x = nxt
        else:
            self.y = nxt
        self.fixed_index = 0
        self.redraw(table=False)

    def action_cycle_colour(self) -> None:
        self.mode = COLOUR_MODES[(COLOUR_MODES.index(self.mode) + 1) % len(COLOUR_MODES)]
        self.redraw(table=False)

    def action_cycle_fixed(self) -> None:
        if self.sweep is None or not self.x:
            return
        n = len(fixed_choices(self.sweep.axes, self.x, self.y))
        if n <= 1:
            self.notify("no other axis to fix: every axis is on the diagram or aggregated")
            return
        self.fixed_index = (self.fixed_index + 1) % n
        self.redraw(table=False)

    def action_open_member(self) -> None:
        if self.query_one("#sweep-members", ResultTable).has_focus:
            self.open_member(self._table_run_id())
            return
        members = self.query_one(PhaseMap).cell_members()
        if not members:
            self.notify("no member in this cell", severity="warning")
            return
        self.open_member(members[0].run_id)

    def open_member(self, run_id: str | None) -> None:
        if run_id is None:
            return
        from grok_engine.errors import GrokError

        try:
            run = self.store.open(run_id)
        except GrokError as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.push_screen(MemberRunScreen.make(self.store, run))

    def action_mark(self) -> None:
        if not self.query_one("#sweep-members", ResultTable).has_focus:
            members = self.query_one(PhaseMap).cell_members()
            run_id = members[0].run_id if members else None
        else:
            run_id = self._table_run_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self._draw_table()
        self.notify(f"{len(self.marked)} marked (m compares)")

    def action_compare(self) -> None:
        problem = compare_problem(len(self.marked), "members")
        if problem:
            self.notify(problem, severity="warning")
            return
        from grok_tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(self.store, list(self.marked)))

    def action_filter(self) -> None:
        self.query_one("#sweep-filter", Input).focus()

    def action_export(self) -> None:
        if not self.figures:
            self.notify("nothing to export yet", severity="warning")
            return
        from grok_engine.sweep.summary import figures_table

        table = figures_table(self.shown_figures(), self.grid_flags())
        proposal = EXPORTS_DIR / f"sweep_{self.sweep_id}_members.csv"

        def go(path: str | None) -> None:
            if path:
                self.write_export(table, path)

        self.app.push_screen(ExportScreen("Export the members table to CSV", str(proposal),
                                          "Enter writes, Esc cancels"), go)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, table: Table, path: str) -> None:
        from grok_engine.export import write_csv

        try:
            self.post_message(SweepExported(write_csv(table, path)))
        except Exception as exc:  # noqa: BLE001
            self.post_message(SweepExported(None, str(exc) or type(exc).__name__))

    def on_sweep_exported(self, message: SweepExported) -> None:
        if message.error:
            self.notify(message.error, severity="error", title="export failed")
        else:
            self.notify(f"wrote {message.path}", title="export")

    def action_back(self) -> None:
        filt = self.query_one("#sweep-filter", Input)
        if filt.has_focus or filt.value:
            filt.value = ""
            self.query_one("#sweep-members", ResultTable).focus()
            return
        self.app.action_open_run()
