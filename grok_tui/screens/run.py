"""The run explorer: one tab per study pane, the selected checkpoint, live training.

A thin adapter over :class:`grok_engine.session.RunSession`, which does the work (one
context cache, studies on its engine thread with prefetch, the training child, export):
keys become session calls; session events, posted from its threads as a SessionEvent,
update the panes here on the UI thread. Each request and the training get a thread worker
that only waits for them, so Textual knows the screen is busy (tests settle on it).
"""

from __future__ import annotations

from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Tab, Tabs

from grok_engine.errors import GrokError
from grok_engine.session import (CheckpointsChanged, Error, ExtraReady, ResultReady, RunOpened, RunSession,
                                 TrainingEnded, TrainingProgress, options_key)
from grok_tui.messages import SessionEvent
from grok_tui.panes.base import StudyPane
from grok_tui.panes.registry import PaneTabs, pane_classes
from grok_tui.panes.training import TrainingPane
from grok_tui.screens.prompts import EpochsPrompt, GotoEpochScreen
from grok_tui.screens.run_export import ExportKeys
from grok_tui.widgets.footer import Footer
from grok_tui.widgets.status import StatusLine

POLL_INTERVAL_S = 2.0  # not training here: look for checkpoints another process wrote


class RunScreen(ExportKeys, Screen):
    """Explore one run: panes, checkpoint navigation, training, export."""

    HELP_NAME = "Run"
    BINDINGS = [
        Binding("left,h", "step(-1)", "Prev ckpt"),
        Binding("right,l", "step(1)", "Next ckpt"),
        Binding("left_square_bracket", "step(-10)", "10 back", show=False),
        Binding("right_square_bracket", "step(10)", "10 forward", show=False),
        Binding("home", "select(0)", "First checkpoint", show=False),
        Binding("end", "select(-1)", "Last checkpoint", show=False),
        Binding("g", "goto_epoch", "Go to epoch"),
        Binding("e", "export_pane", "Export"),
        Binding("E", "export_all", "Export all", show=False),
        Binding("s", "stop_training", "Stop", show=False),
        Binding("r", "resume_training", "Resume", show=False),
        Binding("c", "continue_training", "Continue", show=False),
    ]

    def __init__(self, store: Any, run: Any, train: bool = False) -> None:
        super().__init__()
        self.session = RunSession(store, run, lambda event: self.post_message(SessionEvent(event)))
        self.start_training_on_open = train
        self.epochs: list[int] = []
        self.index = -1
        self.shown: dict[str, tuple[int, tuple]] = {}  # study -> (epoch, options) on screen
        self.training = False
        self.following = True  # on the last checkpoint: follow the ones training adds
        self.panes: dict[str, StudyPane] = {c.STUDY: c(id=f"pane-{c.STUDY}") for c in pane_classes()}
        for study, pane in self.panes.items():
            # The pane itself takes focus: its keys (v, ...) work, and arrows reach this
            # screen's checkpoint keys until the user tabs into a table or heatmap.
            pane.can_focus = True
            self._bindings.bind(pane.KEY, f"show_pane('{study}')", pane.TITLE, show=False)

    @property
    def run(self) -> Any:
        return self.session.run

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
        self.set_interval(POLL_INTERVAL_S, self._poll)
        self.open_run()

    def _poll(self) -> None:
        """Not training here: new checkpoints (and curves) of a run another process trains,
        and whether one does, for the training pane's label."""
        if not self.training:
            self.session.poll()
            self.training_pane.set_elsewhere(self.session.trained_elsewhere())

    def on_unmount(self) -> None:
        self.session.close()  # the training child writes a checkpoint and exits

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

    def _wait(self, wait: Callable[[], Any], group: str) -> None:
        """A thread worker that waits on the session: Textual sees the screen busy."""
        self.run_worker(wait, thread=True, group=group, exit_on_error=False)

    # -- session events ------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_run(self) -> None:
        self.session.open()
        import grok_engine.context  # noqa: F401 - the slow import (torch), off the UI thread

    def on_session_event(self, message: SessionEvent) -> None:
        handlers = {RunOpened: self._run_opened, CheckpointsChanged: self._checkpoints_changed,
                    ResultReady: self._result_ready, ExtraReady: self._extra_ready, Error: self._error,
                    TrainingProgress: self._training_progress, TrainingEnded: self._training_ended}
        handlers.get(type(message.event), lambda event: None)(message.event)  # TrainingStarted: nothing to do

    def _run_opened(self, event: RunOpened) -> None:
        if event.notice:
            self.notify(event.notice, severity="warning", title=self.run.id, timeout=10)
        self.epochs = list(event.epochs)
        self.training_pane.set_metrics(event.metrics, self.run.config.train.epochs)
        self.select(len(self.epochs) - 1)
        if self.start_training_on_open:
            self._start_training(self.session.start_training)

    def _result_ready(self, event: ResultReady) -> None:
        pane = self.panes.get(event.study)
        if pane is None or event.epoch != self.epoch or options_key(event.options) != options_key(pane.options):
            return  # a checkpoint (or options) the user has already left
        self.shown[event.study] = (event.epoch, options_key(event.options))
        if event.study == "progress":
            # the curves study takes its phases from the progress cache this just filled:
            # the Training pane recomputes them when next shown, so both panes agree
            self.shown.pop("curves", None)
        pane.expect_extras(event.pending)  # before show: the pane says they are on their way
        pane.show(event.result)
        if pane is self.current_pane:
            self.call_after_refresh(self.focus_pane)
        for name, extra in event.extras.items():
            pane.show_extra(name, extra)

    def _extra_ready(self, event: ExtraReady) -> None:
        pane = self.panes.get(event.study)
        if pane is None or event.epoch != self.epoch or options_key(event.options) != options_key(pane.options):
            return
        if event.error:
            pane.extra_failed(event.name, event.error)
        else:
            pane.show_extra(event.name, event.result)

    def _error(self, event: Error) -> None:
        if event.where != "study":  # the run itself could not be read
            self.notify(event.message, severity="error", title=self.run.id)
            return
        pane = self.panes.get(event.study or "")
        if pane is not None and event.epoch == self.epoch:
            self.shown[pane.STUDY] = (event.epoch, options_key(pane.options))
            pane.show_error(event.message)

    # -- checkpoint navigation -----------------------------------------------------------
    def select(self, index: int) -> None:
        """Select checkpoint ``index`` (clamped); every pane follows, the visible one now."""
        if not self.epochs:
            self.index = -1
            self._update_status()
            return
        self.index = max(0, min(index, len(self.epochs) - 1))
        self.following = self.index == len(self.epochs) - 1  # new checkpoints: move along
        self.session.select(self.epochs[self.index])
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

    def action_step(self, delta: int) -> None:
        self.select(self.index + delta)

    def action_select(self, index: int) -> None:
        """Checkpoint ``index``; negative counts from the last."""
        self.select(index if index >= 0 else len(self.epochs) + index)

    def action_goto_epoch(self) -> None:
        if not self.epochs:
            self.notify("no checkpoints yet", severity="warning")
            return

        def go(epoch: int | None) -> None:
            if epoch is not None:
                nearest = self.session.nearest(epoch)
                if nearest != epoch:
                    self.notify(f"no checkpoint at epoch {epoch}: showing {nearest}")
                self.select(self.epochs.index(nearest))

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
        pane, focused = self.current_pane, self.focused
        if focused is None or (focused is not pane and pane not in focused.ancestors):
            pane.focus()

    @on(Tabs.TabActivated, "#pane-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        study = (event.tab.id or "").removeprefix("tab-")
        if study in self.panes and self.current_pane.STUDY != study:
            self.action_show_pane(study)

    def refresh_pane(self, pane: StudyPane) -> None:
        """Request ``pane``'s study for the selected checkpoint unless it already shows it."""
        epoch = self.epoch
        if epoch is None or self.shown.get(pane.STUDY) == (epoch, options_key(pane.options)):
            return
        pane.show_loading(epoch)
        request = self.session.request(pane.STUDY, dict(pane.options), epoch=epoch, extras=pane.EXTRA_STUDIES)
        self._wait(request.wait, "study")

    def on_study_pane_options_changed(self, message: StudyPane.OptionsChanged) -> None:
        message.stop()
        message.pane.options = dict(message.options)
        if message.pane is self.current_pane:
            self.refresh_pane(message.pane)

    # -- training ------------------------------------------------------------------------
    def _warn(self, call: Callable[[], Any]) -> bool:
        """``call()``; a GrokError it raises (not training, already training) is a warning."""
        try:
            call()
        except GrokError as exc:
            self.notify(str(exc), severity="warning")
            return False
        return True

    def _start_training(self, start: Callable[[], Any], until_epoch: int | None = None) -> None:
        if self._warn(start):
            self.training = True
            self.training_pane.set_training(True, until_epoch or self.run.config.train.epochs)
            self._update_status()
            self._wait(self.session.wait_training, "train")

    def action_stop_training(self) -> None:
        if self._warn(self.session.stop_training):
            self.notify("stopping: writing a checkpoint")

    def action_resume_training(self) -> None:
        self._start_training(self.session.resume)

    def action_continue_training(self) -> None:
        if self.training:
            self.notify("already training", severity="warning")
            return
        done = self.epochs[-1] if self.epochs else 0

        def go(extra: int | None) -> None:
            if extra:
                self._start_training(lambda: self.session.extend(extra), done + extra)

        self.app.push_screen(EpochsPrompt(done), go)

    def _training_progress(self, event: TrainingProgress) -> None:
        self.training_pane.append_metrics(event.chunk)
        self.training_pane.set_training(self.training, event.target_epoch, event.eta_s)

    def _checkpoints_changed(self, event: CheckpointsChanged) -> None:
        """New checkpoints (the session sends them a few times a second at most); for a run
        another process trains, its curves up to the newest one."""
        self.epochs = list(event.epochs)
        if event.metrics is not None:
            self.training_pane.set_metrics(event.metrics, self.run.config.train.epochs)
        if self.following:
            self.select(len(self.epochs) - 1)
        else:
            self._update_status()

    def _training_ended(self, event: TrainingEnded) -> None:
        self.training = False
        self.training_pane.set_training(False, self.run.config.train.epochs)
        self._update_status()
        if event.error:
            self.notify(event.error, severity="error", title="training failed")
        elif event.stopped:
            self.notify(f"stopped at epoch {event.epoch}; r resumes")
        else:
            self.notify(f"training done at epoch {event.epoch}")
