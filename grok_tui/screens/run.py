"""The run explorer: one tab per study pane, the selected checkpoint, live training.

State lives here: the run, its checkpoint epochs, the selected one. Every engine call runs
in a thread worker and comes back as a message (grok_tui.messages):

- studies: an exclusive worker builds (or reuses) the checkpoint's Context through a
  ContextCache and runs the VISIBLE pane's study; other panes compute when shown;
- training: a worker runs ``grok_engine.train_process`` in a child process (no GIL shared
  with the UI) and posts its progress chunks and saved checkpoints back; ``s`` asks it to
  stop;
- export: a worker writes CSV through grok_engine.export.

The engine (torch, transformer_lens) is imported inside the workers only.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Tab, Tabs
from textual.worker import get_current_worker

from grok_engine.paths import export_file, export_folder
from grok_tui.messages import (CheckpointSaved, ExportDone, RunOpened, StudyFailed, StudyReady,
                               TrainingFinished, TrainingProgress)
from grok_tui.panes.base import StudyPane
from grok_tui.panes.training import TrainingPane
from grok_tui.screens.prompts import EpochsPrompt, ExportScreen, GotoEpochScreen
from grok_tui.widgets.footer import Footer
from grok_tui.widgets.status import StatusLine

FOLLOW_INTERVAL_S = 0.5  # while training, the panes follow new checkpoints this often at most


def pane_classes() -> list[type[StudyPane]]:
    """The Training pane, then the study panes of grok_tui.panes.registry (when present)."""
    try:
        from grok_tui.panes.registry import PANE_CLASSES
    except ImportError:
        PANE_CLASSES = []
    return [TrainingPane, *[c for c in PANE_CLASSES if c.STUDY != TrainingPane.STUDY]]


class PaneTabs(Tabs, can_focus=False):
    """The pane tabs: clicked with the mouse, switched with the number keys; never focused,
    so left/right stay the checkpoint keys."""


def _options_key(options: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def _message(exc: BaseException) -> str:
    """One line for the user: GrokError as is, anything else with its type."""
    from grok_engine.errors import GrokError

    if isinstance(exc, GrokError):
        return str(exc)
    if isinstance(exc, ImportError):
        return f"not available in this build ({exc})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


class RunScreen(Screen):
    """Explore one run: panes, checkpoint navigation, training, export."""

    HELP_NAME = "Run"
    BINDINGS = [
        Binding("left,h", "prev_checkpoint", "Prev ckpt"),
        Binding("right,l", "next_checkpoint", "Next ckpt"),
        Binding("left_square_bracket", "back_ten", "10 back", show=False),
        Binding("right_square_bracket", "forward_ten", "10 forward", show=False),
        Binding("home", "first_checkpoint", "First checkpoint", show=False),
        Binding("end", "last_checkpoint", "Last checkpoint", show=False),
        Binding("g", "goto_epoch", "Go to epoch"),
        Binding("e", "export_pane", "Export"),
        Binding("E", "export_all", "Export all", show=False),
        Binding("s", "stop_training", "Stop", show=False),
        Binding("r", "resume_training", "Resume", show=False),
        Binding("c", "continue_training", "Continue", show=False),
    ]

    def __init__(self, store: Any, run: Any, train: bool = False) -> None:
        super().__init__()
        self.store = store
        self.run = run
        self.start_training_on_open = train
        self.epochs: list[int] = []
        self.index = -1
        self.panes: dict[str, StudyPane] = {}
        self.shown: dict[str, tuple[int, tuple]] = {}  # study -> (epoch, options) on screen
        self.training = False
        self._stop = threading.Event()
        self._train_proc: Any = None  # the training process (subprocess.Popen) while it runs
        self._engine_lock = threading.Lock()  # ContextCache and torch work, one at a time
        self._contexts: Any = None
        self._train_started = 0.0
        self._follow_timer: Any = None
        self._follow_pending = False
        self.following = True  # on the last checkpoint: follow the ones training adds
        for pane_class in pane_classes():
            pane = pane_class(id=f"pane-{pane_class.STUDY}")
            # The pane itself takes focus: its keys (v, ...) work, and arrows reach this
            # screen's checkpoint keys until the user tabs into a table or heatmap.
            pane.can_focus = True
            self.panes[pane_class.STUDY] = pane
        self.BINDINGS_PANES = [
            Binding(p.KEY, f"show_pane('{s}')", p.TITLE, show=False) for s, p in self.panes.items()
        ]
        for binding in self.BINDINGS_PANES:
            self._bindings.bind(binding.key, binding.action, binding.description, show=False)

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield PaneTabs(*[Tab(f"{p.KEY} {p.TITLE}", id=f"tab-{s}") for s, p in self.panes.items()],
                       id="pane-tabs")
        with ContentSwitcher(initial="pane-curves", id="panes"):
            yield from self.panes.values()
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run.id
        self.status.set_checkpoint(self.run.id, None, 0, 0, {}, "reading the run…")
        self.call_after_refresh(self.focus_pane)
        self.open_run()

    def on_unmount(self) -> None:
        self._stop.set()  # the training process writes a checkpoint and exits
        self._send_stop()
        self._contexts = None  # the activation caches go now, whatever holds the screen

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @property
    def training_pane(self) -> TrainingPane:
        return self.panes[TrainingPane.STUDY]  # type: ignore[return-value]

    @property
    def current_pane(self) -> StudyPane:
        current = self.query_one("#panes", ContentSwitcher).current or "pane-curves"
        return self.panes[current.removeprefix("pane-")]

    @property
    def epoch(self) -> int | None:
        return self.epochs[self.index] if 0 <= self.index < len(self.epochs) else None

    # -- opening -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_run(self) -> None:
        run = self.run
        notice = None
        try:
            epochs = run.checkpoint_epochs()
        except Exception as exc:  # noqa: BLE001 - shown, never a traceback
            self.post_message(StudyFailed(TrainingPane.STUDY, -1, _message(exc)))
            return
        try:
            metrics = run.metrics().truncate(epochs[-1] if epochs else 0)
        except Exception as exc:  # noqa: BLE001 - bad metrics hide no checkpoint
            from grok_engine.train import Metrics

            metrics, notice = Metrics(), f"no training curves: {_message(exc)}"
        try:
            diverged = run.diverged()
        except Exception as exc:  # noqa: BLE001 - an unreadable marker hides nothing else
            diverged, notice = None, notice or _message(exc)
        if diverged is not None:
            notice = "; ".join(filter(None, [
                f"diverged at epoch {diverged['epoch']} ({diverged['reason']}): checkpoints end at "
                f"the last finite one", notice]))
        self.post_message(RunOpened(run, epochs, metrics, notice))
        from grok_engine.context import ContextCache  # the slow import, off the UI thread

        self._contexts = ContextCache(maxsize=4)

    def on_run_opened(self, message: RunOpened) -> None:
        if message.notice:
            self.notify(message.notice, severity="warning", title=self.run.id, timeout=10)
        self.epochs = list(message.epochs)
        self.training_pane.set_metrics(message.metrics, self.run.config.train.epochs)
        self.select(len(self.epochs) - 1)
        if self.start_training_on_open:
            self.start_training()

    # -- checkpoint navigation -----------------------------------------------------------
    def select(self, index: int) -> None:
        """Select checkpoint ``index`` (clamped); every pane follows, the visible one now."""
        if not self.epochs:
            self.index = -1
            self._update_status()
            return
        self.index = max(0, min(index, len(self.epochs) - 1))
        self.following = self.index == len(self.epochs) - 1  # new checkpoints: move along
        self.training_pane.set_marker(self.epoch)
        for pane in self.panes.values():
            pane.set_selected_epoch(self.epoch)
        self._update_status()
        self.refresh_pane(self.current_pane)

    def _update_status(self) -> None:
        state = "training" if self.training else ""  # s stops it: the Training pane says so
        epoch = self.epoch
        metrics = self.training_pane.metrics_at(epoch) if epoch is not None else {}
        self.status.set_checkpoint(self.run.id, epoch, self.index, len(self.epochs), metrics, state)

    def action_prev_checkpoint(self) -> None:
        self.select(self.index - 1)

    def action_next_checkpoint(self) -> None:
        self.select(self.index + 1)

    def action_back_ten(self) -> None:
        self.select(self.index - 10)

    def action_forward_ten(self) -> None:
        self.select(self.index + 10)

    def action_first_checkpoint(self) -> None:
        self.select(0)

    def action_last_checkpoint(self) -> None:
        self.select(len(self.epochs) - 1)

    def action_goto_epoch(self) -> None:
        if not self.epochs:
            self.notify("no checkpoints yet", severity="warning")
            return

        def go(epoch: int | None) -> None:
            if epoch is None:
                return
            nearest = min(range(len(self.epochs)), key=lambda i: (abs(self.epochs[i] - epoch), i))
            if self.epochs[nearest] != epoch:
                self.notify(f"no checkpoint at epoch {epoch}: showing {self.epochs[nearest]}")
            self.select(nearest)

        self.app.push_screen(GotoEpochScreen(self.epochs, self.epoch or 0), go)

    # -- panes ---------------------------------------------------------------------------
    def action_show_pane(self, study: str) -> None:
        if study not in self.panes:
            return
        self.query_one("#panes", ContentSwitcher).current = f"pane-{study}"
        self.query_one("#pane-tabs", Tabs).active = f"tab-{study}"
        self.refresh_pane(self.panes[study])
        self.call_after_refresh(self.focus_pane)

    def focus_pane(self) -> None:
        """Focus the visible pane unless focus is already inside it (a loading pane cannot
        take focus; it is focused again when its result arrives)."""
        pane = self.current_pane
        focused = self.focused
        if focused is None or (focused is not pane and pane not in focused.ancestors):
            pane.focus()

    @on(Tabs.TabActivated, "#pane-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        study = (event.tab.id or "").removeprefix("tab-")
        if study in self.panes and self.current_pane.STUDY != study:
            self.action_show_pane(study)

    def refresh_pane(self, pane: StudyPane) -> None:
        """Compute ``pane``'s study for the selected checkpoint unless it already shows it."""
        epoch = self.epoch
        if epoch is None:
            return
        want = (epoch, _options_key(pane.options))
        if self.shown.get(pane.STUDY) == want:
            return
        pane.show_loading(epoch)
        self.compute_study(pane.STUDY, epoch, dict(pane.options), tuple(pane.EXTRA_STUDIES))

    def on_study_pane_options_changed(self, message: StudyPane.OptionsChanged) -> None:
        message.stop()
        message.pane.options = dict(message.options)
        if message.pane is self.current_pane:
            self.refresh_pane(message.pane)

    @work(thread=True, exclusive=True, group="study", exit_on_error=False)
    def compute_study(self, study: str, epoch: int, options: dict[str, Any],
                      extra_studies: tuple[str, ...] = ()) -> None:
        """``study`` with ``options`` and the pane's extra studies (default options)."""
        worker = get_current_worker()
        extras: dict[str, Any] = {}
        extra_errors: list[str] = []
        with self._engine_lock:
            if worker.is_cancelled:  # a newer request replaced this one
                return
            try:
                from grok_engine import runtime
                from grok_engine.studies import run_study

                runtime.study_threads(self.training)  # a core left to a training child
                ctx = self._checkpoint_context(epoch)
                if worker.is_cancelled:
                    return
                result = run_study(study, ctx, **options)
            except Exception as exc:  # noqa: BLE001 - shown in the pane, never a traceback
                self.post_message(StudyFailed(study, epoch, _message(exc)))
                return
            for name in extra_studies:
                try:
                    extras[name] = run_study(name, ctx)
                except Exception as exc:  # noqa: BLE001
                    extra_errors.append(f"{name}: {_message(exc)}")
        self.post_message(StudyReady(study, epoch, options, result, extras, extra_errors))

    def _checkpoint_context(self, epoch: int) -> Any:
        """The Context of ``epoch`` (caller holds the engine lock; worker thread only)."""
        if self._contexts is None:
            from grok_engine.context import ContextCache

            self._contexts = ContextCache(maxsize=4)
        return self._contexts.get(self.run, epoch)

    def on_study_ready(self, message: StudyReady) -> None:
        pane = self.panes.get(message.study)
        if pane is None or message.epoch != self.epoch:
            return  # a checkpoint the user has already left
        if _options_key(message.options) != _options_key(pane.options):
            return
        self.shown[message.study] = (message.epoch, _options_key(message.options))
        if message.study == "progress":
            # the curves study takes its phases from the progress cache this just filled:
            # the Training pane recomputes them when next shown, so both panes agree
            self.shown.pop("curves", None)
        pane.show(message.result)
        if pane is self.current_pane:
            self.call_after_refresh(self.focus_pane)
        for name, extra in message.extras.items():
            pane.show_extra(name, extra)
        for error in message.extra_errors:
            pane.show_error(error)

    def on_study_failed(self, message: StudyFailed) -> None:
        pane = self.panes.get(message.study)
        if message.epoch == -1:  # the run itself could not be read
            self.notify(message.message, severity="error", title=self.run.id)
            return
        if pane is not None and message.epoch == self.epoch:
            self.shown[message.study] = (message.epoch, _options_key(pane.options))
            pane.show_error(message.message)

    # -- training ------------------------------------------------------------------------
    def action_stop_training(self) -> None:
        if not self.training:
            self.notify("not training", severity="warning")
            return
        self._stop.set()
        self._send_stop()
        self.notify("stopping: writing a checkpoint")

    def action_resume_training(self) -> None:
        if self.training:
            self.notify("already training", severity="warning")
            return
        done = self.epochs[-1] if self.epochs else 0
        if done >= self.run.config.train.epochs:
            self.notify(f"run is complete ({done} epochs): c trains more", severity="warning")
            return
        self.start_training()

    def action_continue_training(self) -> None:
        if self.training:
            self.notify("already training", severity="warning")
            return
        done = self.epochs[-1] if self.epochs else 0

        def go(extra: int | None) -> None:
            if extra:
                self.start_training(until_epoch=done + extra)

        self.app.push_screen(EpochsPrompt(done), go)

    def start_training(self, until_epoch: int | None = None) -> None:
        self.training = True
        self._stop.clear()
        self._train_started = time.monotonic()
        self.training_pane.set_training(True, until_epoch or self.run.config.train.epochs)
        self._update_status()
        self.train(until_epoch)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def train(self, until_epoch: int | None) -> None:
        """Train in a child process (``grok_engine.train_process``) and relay its JSON lines
        as messages. A process, not this thread: training holds the GIL about half the
        time, which made every render and key press of the app twice as slow. The child
        persists every checkpoint before reporting it; ``s`` (or the app leaving) writes
        "stop" to its stdin (or closes it) and it stops after a checkpoint."""
        import json
        import subprocess
        import sys
        import tempfile

        import numpy as np

        from grok_engine.train import Metrics

        run, epoch, start, error = self.run, 0, 0, None
        try:
            if until_epoch is not None and until_epoch > run.config.train.epochs:
                run = self.store.extend_epochs(run, until_epoch)  # a change of plan, recorded
                self.run = run
            cmd = [sys.executable, "-m", "grok_engine.train_process", str(self.store.root.resolve()), run.id]
            if until_epoch is not None:
                cmd += ["--until-epoch", str(until_epoch)]
            # stderr to a file, never the terminal the app draws on; its last line names a
            # crash that the process could not report itself (killed, failed to start).
            stderr = tempfile.TemporaryFile("w+")
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True, bufsize=1)
        except Exception as exc:  # noqa: BLE001 - reported in the app, never a traceback
            self.post_message(TrainingFinished(epoch, self._stop.is_set(), _message(exc)))
            return
        self._train_proc = proc
        if self._stop.is_set():  # stopped before the process existed
            self._send_stop()
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
                kind = msg["event"]
            except (ValueError, TypeError, KeyError):  # not ours: a library printed something
                continue
            epoch = msg.get("epoch", epoch)
            if kind == "started":
                start = epoch
            elif kind == "checkpoint":
                self.post_message(CheckpointSaved(epoch))
            elif kind == "progress":
                chunk = Metrics(**{k: np.asarray(v) for k, v in msg["metrics"].items()})
                self.post_message(TrainingProgress(chunk, epoch, msg["target"], msg["elapsed_s"], start))
            elif kind == "error":
                error = msg["message"]
        proc.wait()
        self._train_proc = None
        if error is None and proc.returncode != 0:
            stderr.seek(0)
            last = (stderr.read().strip().splitlines() or [""])[-1]
            error = f"the training process exited with code {proc.returncode}" + (f": {last}" if last else "")
        stderr.close()
        self.post_message(TrainingFinished(epoch, self._stop.is_set(), error))

    def _send_stop(self) -> None:
        """Ask the training process to stop (it writes a checkpoint first)."""
        proc = self._train_proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write("stop\n")
            proc.stdin.close()
        except (OSError, ValueError):  # it has already exited
            pass

    def on_training_progress(self, message: TrainingProgress) -> None:
        self.training_pane.append_metrics(message.chunk)
        done = message.epoch - message.start_epoch
        eta = (message.elapsed_s / done * (message.target_epoch - message.epoch)) if done > 0 else None
        self.training_pane.set_training(self.training, message.target_epoch, eta)

    def on_checkpoint_saved(self, message: CheckpointSaved) -> None:
        if message.epoch not in self.epochs:
            self.epochs.append(message.epoch)
            self.epochs.sort()
        if not self.following:
            self._update_status()
        elif not self.training or self._follow_timer is None:
            # Checkpoints can arrive many times a second; the panes follow at most
            # FOLLOW_INTERVAL_S apart so the UI thread stays free for keys.
            self.select(self.epochs.index(message.epoch))
            if self.training:
                self._follow_timer = self.set_timer(FOLLOW_INTERVAL_S, self._follow_latest)
        else:
            self._follow_pending = True

    def _follow_latest(self) -> None:
        self._follow_timer = None
        if self._follow_pending:
            self._follow_pending = False
            if self.following:
                self.select(len(self.epochs) - 1)

    def on_training_finished(self, message: TrainingFinished) -> None:
        self.training = False
        if self._follow_pending or self._follow_timer is not None:
            if self._follow_timer is not None:
                self._follow_timer.stop()
            self._follow_timer = None
            self._follow_pending = False
            if self.following:
                self.select(len(self.epochs) - 1)
        self.training_pane.set_training(False, self.run.config.train.epochs)
        self._update_status()
        if message.error:
            self.notify(message.error, severity="error", title="training failed")
        elif message.stopped:
            self.notify(f"stopped at epoch {message.epoch}; r resumes")
        else:
            self.notify(f"training done at epoch {message.epoch}")

    # -- export --------------------------------------------------------------------------
    def action_export_pane(self) -> None:
        pane, epoch = self.current_pane, self.epoch
        target = pane.export_target()
        if target is None or epoch is None:
            self.notify(f"{pane.TITLE}: nothing to export yet", severity="warning")
            return
        from grok_engine.export import export_file_name

        proposal = export_file(self.run.id, export_file_name(pane.STUDY, target, epoch))

        def go(path: str | None) -> None:
            if path:
                self.write_export(target, path)

        self.app.push_screen(ExportScreen(f"Export {target.name} to CSV", str(proposal),
                                          "Enter writes, Esc cancels"), go)

    def action_export_all(self) -> None:
        epoch = self.epoch
        if epoch is None:
            self.notify("no checkpoints yet", severity="warning")
            return
        proposal = export_folder(self.run.id, epoch)

        def go(folder: str | None) -> None:
            if folder:
                self.export_checkpoint(epoch, folder)

        self.app.push_screen(ExportScreen(f"Export every study at epoch {epoch}", str(proposal),
                                          "a folder; Enter writes, Esc cancels"), go)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, target: Any, path: str) -> None:
        from grok_engine.export import write_csv

        try:
            self.post_message(ExportDone([write_csv(target, path)]))
        except Exception as exc:  # noqa: BLE001
            self.post_message(ExportDone([], _message(exc)))

    @work(thread=True, group="export", exit_on_error=False)
    def export_checkpoint(self, epoch: int, folder: str) -> None:
        from grok_engine.export import export_all

        try:
            with self._engine_lock:
                paths = export_all(self._checkpoint_context(epoch), folder)
            self.post_message(ExportDone(paths))
        except Exception as exc:  # noqa: BLE001
            self.post_message(ExportDone([], _message(exc)))

    def on_export_done(self, message: ExportDone) -> None:
        if message.error:
            self.notify(message.error, severity="error", title="export failed")
        elif len(message.paths) == 1:
            self.notify(f"wrote {message.paths[0]}", title="export")
        else:
            folder = message.paths[0].parent if message.paths else "?"
            self.notify(f"wrote {len(message.paths)} files in {folder}", title="export")
