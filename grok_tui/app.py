"""The Textual app: ``grok-tui [RUN] [--runs-dir DIR]``.

First paint is fast because nothing heavy is imported here: torch, the run store, the
model and transformer_lens load in a thread worker while a loading screen shows. Then the
app opens the run asked for, or the run picker, or (no runs yet) the new-run form with the
notebook's experiment ready to start on Enter.
"""

from __future__ import annotations

import contextvars
import os
import sys
import weakref
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.content import Content
from textual.widgets import LoadingIndicator, Static

from grok_engine import runtime
from grok_engine.paths import resolve_runs_dir
from grok_tui.commands import GrokCommands
from grok_tui.messages import EngineFailed, EngineLoaded, EngineWarm
from grok_tui.screens.help import HelpScreen, binding_rows, collect_sections
from grok_tui.screens.new_run import NewRunRequest, NewRunScreen
from grok_tui.screens.run_picker import NEW_RUN, CompareRuns, OpenSweep, RunPickerScreen, picker_rows
from grok_tui.widgets.footer import Footer

def warm_study_imports() -> None:
    """Import what the studies need (transformer_lens, scikit-learn: seconds) while the user
    reads the first screen, not on the first checkpoint switch. A failure here is not
    fatal: the study that needs the module reports it when it runs."""
    try:
        import sklearn.model_selection  # noqa: F401

        import grok_engine.model  # noqa: F401
        from grok_engine.studies import STUDY_MODULES, get_study

        for name in STUDY_MODULES:
            get_study(name)
    except Exception:  # noqa: BLE001
        pass


REFREEZE_TRIES = 5  # refreezes (~0.3 s each) after a screen's removal, until it is collected


class GrokApp(App):
    """The grokking explorer."""

    CSS_PATH = "app.tcss"
    TITLE = "grok-tui"
    COMMANDS = App.COMMANDS | {GrokCommands}
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("o", "open_run", "Runs"),
        Binding("n", "new_run", "New run", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, run_id: str | None = None, runs_dir: str | os.PathLike | None = None,
                 train: bool = False, compare: list[str] | None = None, sweep_id: str | None = None) -> None:
        """``compare``: run ids to open the comparison screen with; ``sweep_id``: a sweep to
        open the sweep screen of (instead of a run or the picker)."""
        super().__init__()
        self.run_id = run_id
        self.compare_ids = list(compare or [])
        self.sweep_id = sweep_id
        self.runs_dir = resolve_runs_dir(str(runs_dir) if runs_dir is not None else None)
        self.train_on_open = train
        self.store: Any = None

    def compose(self) -> ComposeResult:
        with Middle(id="boot"):
            with Center():
                yield Static("grok-tui — loading the engine (torch)…", id="boot-text")
            yield LoadingIndicator(id="boot-spinner")
        yield Footer()

    def on_mount(self) -> None:
        self.load_engine()

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast of the app is plain text: its messages carry run ids, paths and
        file contents, which are data, never markup (``markup`` is ignored)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_unmount(self) -> None:
        runtime.thaw()

    def on_engine_warm(self, message: EngineWarm) -> None:
        runtime.freeze()

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def load_engine(self) -> None:
        """Import the engine and list the runs, off the UI thread."""
        try:
            from grok_engine.store import RunStore  # torch

            store = RunStore(self.runs_dir)
            if self.compare_ids or self.sweep_id:
                self.post_message(EngineLoaded(store, None, []))
            elif self.run_id:
                self.post_message(EngineLoaded(store, store.open(self.run_id), []))
            else:
                self.post_message(EngineLoaded(store, None, picker_rows(store)))
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            self.post_message(EngineFailed(str(exc) or type(exc).__name__))
            return
        warm_study_imports()
        self.post_message(EngineWarm())  # on the UI thread, and only while the app runs

    def on_engine_loaded(self, message: EngineLoaded) -> None:
        self.store = message.store
        self.query_one("#boot-text", Static).update(
            Content(f"grok-tui — runs in {self.runs_dir}  ·  o: runs  ·  n: new run  ·  q: quit"))
        self.query_one("#boot-spinner").display = False
        if self.compare_ids:
            self.show_compare(self.compare_ids)
        elif self.sweep_id:
            self.show_sweep(self.sweep_id)
        elif message.run is not None:
            self.show_run(message.run, train=self.train_on_open)
        elif message.summaries:
            self.push_screen(RunPickerScreen(message.summaries, str(self.runs_dir)), self._picked)
        else:
            self.push_screen(NewRunScreen(first_run=True), self._new_run_requested)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.query_one("#boot-spinner").display = False
        self.query_one("#boot-text", Static).update(Content(f"grok-tui: {message.message}"))
        self.notify(message.message, severity="error")

    # -- screens -------------------------------------------------------------------------
    def _clear_screens(self) -> list[AwaitComplete]:
        """Pop every screen above the default one; the removals, to await."""
        return [self.pop_screen() for _ in range(len(self.screen_stack) - 1)]

    def show_run(self, run: Any, train: bool = False) -> None:
        """Replace whatever is shown by the explorer of ``run``."""
        from grok_tui.screens.run import RunScreen

        replaced = [weakref.ref(s) for s in self.screen_stack if isinstance(s, RunScreen)]
        removals = self._clear_screens()
        self.push_screen(RunScreen(self.store, run, train=train))
        if replaced:  # the old screen may have been frozen: let the collector have it
            self.call_next(self._refreeze_after, removals, replaced)

    async def _refreeze_after(self, removals: list[AwaitComplete], screens: list) -> None:
        """Once the replaced screens are unmounted and removed, collect them: their
        contexts and caches were in the frozen heap (runtime.refreeze)."""
        for removal in removals:
            await removal
        self.call_after_refresh(self._refreeze_when_gone, screens, REFREEZE_TRIES)

    def _refreeze_when_gone(self, screens: list, tries: int) -> None:
        # In a context of its own: the caller's may hold the old screen as Textual's active
        # message pump. Textual may still hold it for a moment after its removal (a
        # callback list being run, a thread worker started under it): then the next
        # refresh tries again.
        contextvars.Context().run(runtime.refreeze)
        if tries > 1 and any(ref() is not None for ref in screens):
            self.call_after_refresh(self._refreeze_when_gone, screens, tries - 1)

    def _picked(self, run_id: str | OpenSweep | CompareRuns | None) -> None:
        if run_id == NEW_RUN:
            self.action_new_run()
        elif isinstance(run_id, OpenSweep):
            self.show_sweep(run_id.sweep_id)
        elif isinstance(run_id, CompareRuns):
            self.show_compare(list(run_id.run_ids))
        elif run_id:
            self.open_run_id(run_id)

    def shown_run_id(self) -> str | None:
        """The id of the run the top run screen shows, if any (the picker's cursor starts there)."""
        from grok_tui.screens.run import RunScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen.run.id
        return None

    def show_sweep(self, sweep_id: str) -> None:
        """Replace whatever is shown by the sweep screen of ``sweep_id``."""
        from grok_tui.screens.sweep import SweepScreen

        self._clear_screens()
        self.push_screen(SweepScreen(self.store, sweep_id))

    def show_compare(self, run_ids: list[str]) -> None:
        """Push the comparison of ``run_ids`` (Escape comes back)."""
        from grok_tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(self.store, run_ids))

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def open_run_id(self, run_id: str) -> None:
        try:
            run = self.store.open(run_id)
        except Exception as exc:  # noqa: BLE001 - said in a toast; the picker comes back
            self.post_message(EngineFailed(str(exc) or type(exc).__name__))
            self.call_from_thread(self.list_runs)
            return
        self.call_from_thread(self.show_run, run)

    def _new_run_requested(self, request: NewRunRequest | None) -> None:
        if request is not None:
            self.create_run(request)

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def create_run(self, request: NewRunRequest) -> None:
        try:
            from grok_engine.memory import check_fits
            from grok_engine.train import pick_device

            # the device and the size first, as `grok-tui train`: a refused run leaves no folder
            check_fits(request.config, pick_device(request.config.train.device))
            run = self.store.create(request.config, run_id=request.run_id)
        except Exception as exc:  # noqa: BLE001
            self.post_message(EngineFailed(str(exc)))
            return
        self.call_from_thread(self.show_run, run, True)

    # -- actions -------------------------------------------------------------------------
    def action_open_run(self) -> None:
        if self.store is None:
            return
        self.list_runs()

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def list_runs(self) -> None:
        try:
            rows = picker_rows(self.store)
        except Exception as exc:  # noqa: BLE001 - the runs folder itself cannot be read
            self.post_message(EngineFailed(str(exc) or type(exc).__name__))
            return
        self.call_from_thread(self._push_picker, rows)

    def _push_picker(self, rows: list[Any]) -> None:
        self.push_screen(RunPickerScreen(rows, str(self.runs_dir), current=self.shown_run_id()), self._picked)

    def action_new_run(self) -> None:
        if self.store is None:
            return
        self.push_screen(NewRunScreen(first_run=False), self._new_run_requested)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        pane = getattr(self.screen, "current_pane", None)
        rows = binding_rows(self, collect_sections(self.screen, pane))
        self.push_screen(HelpScreen(rows))


def run_exists(runs_dir: Path, run_id: str) -> bool:
    """Cheap check before the app starts (no torch): the run folder has a config.json, or
    cannot be looked into (then the app opens it and says why it cannot be read)."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        return False
    try:
        os.lstat(runs_dir / run_id / "config.json")
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # permission denied: not the same as missing
        return True
    return True


def _run_ids(root: Path) -> list[str]:
    try:
        return sorted(e.name for e in root.iterdir() if not e.name.startswith(".") and run_exists(root, e.name))
    except OSError:  # not a folder, or not readable: the app says so when it lists runs
        return []


def sweep_exists(runs_dir: Path, sweep_id: str) -> bool:
    """Cheap check (no torch): the folder has a sweep.json (grok_engine.sweep.store.SWEEP_FILE)."""
    if not sweep_id or "/" in sweep_id or sweep_id in (".", ".."):
        return False
    return (runs_dir / sweep_id / "sweep.json").is_file()


def run_app(run_id: str | None, runs_dir: str | None) -> int:
    """Run the app on a run or a sweep (RUN may name either); an unknown one is refused
    with one line and exit code 2 before it starts."""
    root = resolve_runs_dir(runs_dir)
    if run_id is not None and not run_exists(root, run_id) and sweep_exists(root, run_id):
        GrokApp(None, root, sweep_id=run_id).run()
        return 0
    if run_id is not None and not run_exists(root, run_id):
        have = _run_ids(root)
        shown = ", ".join(have[:10]) + (" ..." if len(have) > 10 else "")
        print(f"grok-tui: run {run_id!r} does not exist in {root}: have {shown or 'no runs'}",
              file=sys.stderr)
        return 2
    GrokApp(run_id, root).run()
    return 0
