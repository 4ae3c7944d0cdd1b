"""The contract between the app and its panes.

A pane shows one study of grok_engine for the selected checkpoint. The app computes the
study in a thread worker (never on the UI thread) and calls :meth:`StudyPane.show` with the
result; the pane only renders. A pane whose study takes options (a neuron, the components
to keep) posts :class:`StudyPane.OptionsChanged` and the app recomputes.

What the app calls (all on the UI thread):

- ``show(result)``: the StudyResult of ``STUDY`` for the selected checkpoint.
- ``show_extra(name, result)``: the result of each study named in ``EXTRA_STUDIES`` (the
  Neurons pane also shows the probe's R^2, so it lists "probe"); the app computes those
  beside ``STUDY`` with their default options and passes them here.
- ``show_loading(epoch)`` / ``show_error(message)``.
- ``set_selected_epoch(epoch)``: the selected checkpoint changed (the Progress pane moves
  its marker; the others ignore it: their next ``show`` carries the epoch).
- ``export_target()``: the table or grid under focus, else the one the pane shows first.

Subclasses implement :meth:`render_result` (and :meth:`render_extra`); ``show`` may come
before the pane is mounted, in which case the result is rendered on mount.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Static, TabbedContent

from grok_engine.results import Grid, StudyResult, Table
from grok_tui.format import digits as fmt_num, percent as fmt_pct  # noqa: F401 - the panes' names
from grok_engine.studies.schema import SCHEMAS, ResultView


# The key of panes whose views are tabs (a pane without tabs leaves it out: a key that
# does nothing is never advertised).
NEXT_VIEW = Binding("v", "next_view", "Next view")


class StudyPane(Vertical):
    """Base of every study pane. Subclasses set STUDY, TITLE, KEY and BINDINGS."""

    STUDY: ClassVar[str] = ""  # registry name in grok_engine.studies.STUDY_MODULES
    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # number key that shows this pane
    EXTRA_STUDIES: ClassVar[tuple[str, ...]] = ()  # other studies the app passes to show_extra
    FOLLOWS: ClassVar[tuple[str, ...]] = ()  # options this pane takes from the others (share_option)

    DEFAULT_CSS = """
    StudyPane {
        border: round $border-blurred;
        border-title-color: $text-muted;
        height: 1fr;
    }
    StudyPane:focus-within {
        border: round $accent;
        border-title-color: $text;
        border-title-style: bold;
    }
    StudyPane .pane-summary {
        height: auto;
        max-height: 2;
        padding: 0 1;
        color: $text;
    }
    StudyPane .pane-error {
        color: $text-error;
        padding: 0 1;
        height: auto;
    }
    StudyPane TabbedContent { height: 1fr; }
    StudyPane TabPane { padding: 0; height: 1fr; }
    """

    class OptionsChanged(Message):
        """The pane wants its study recomputed with these options."""

        def __init__(self, pane: "StudyPane", options: dict[str, Any]) -> None:
            super().__init__()
            self.pane = pane
            self.options = options

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options: dict[str, Any] = {}
        self.result: StudyResult | None = None
        self.extras: dict[str, StudyResult] = {}
        self.pending_extras: set[str] = set()  # extras of the shown result still computing
        self._refocus: Widget | None = None  # what had focus when the pane started loading
        self.border_title = f"{self.KEY} {self.TITLE}" if self.KEY else self.TITLE

    # -- the app's calls ----------------------------------------------------------------
    def show(self, result: StudyResult) -> None:
        """Render ``result`` (UI thread)."""
        self.result = result
        self._stop_loading()
        self.border_subtitle = f"epoch {result.epoch}"
        if self.is_mounted:
            self.render_result(result)

    def expect_extras(self, names: tuple[str, ...]) -> None:
        """``names`` (of EXTRA_STUDIES) are being computed for the result about to be shown:
        their results of another checkpoint go, and ``pending_extras`` names them until
        each comes (:meth:`show_extra`)."""
        for name in names:
            self.extras.pop(name, None)
        self.pending_extras = set(names)

    def extra_failed(self, name: str, message: str) -> None:
        """The extra study ``name`` failed: ``message`` shown, nothing pending for it."""
        self.pending_extras.discard(name)
        self.show_error(message)
        if self.is_mounted:
            self.render_extra(name, None)

    def show_extra(self, name: str, result: StudyResult) -> None:
        """The result of ``name`` (one of EXTRA_STUDIES) for the same checkpoint."""
        self.extras[name] = result
        self.pending_extras.discard(name)
        if self.is_mounted:
            self.render_extra(name, result)

    def show_loading(self, epoch: int) -> None:
        """The study for ``epoch`` is being computed."""
        focused = self.app.focused if self.is_mounted else None
        if focused is not None and self in focused.ancestors:
            self._refocus = focused  # the loading cover takes focus away from it
        self.loading = True

    def show_error(self, message: str) -> None:
        """The study failed; show ``message`` instead of a traceback."""
        self._stop_loading()
        self.notify(message, severity="error", title=self.TITLE)

    def _stop_loading(self) -> None:
        """Uncover the pane and give focus back to the widget that had it before loading
        (a table after Enter on a row: its keys, S and R, keep working)."""
        self.loading = False
        widget, self._refocus = self._refocus, None
        if widget is not None and self.is_mounted:
            self.call_after_refresh(self._give_focus_back, widget)

    def _give_focus_back(self, widget: Widget) -> None:
        focused = self.app.focused
        if widget.is_attached and (focused is None or focused is self):
            widget.focus()

    def set_selected_epoch(self, epoch: int) -> None:
        """The selected checkpoint is now ``epoch`` (default: nothing to do)."""

    def export_target(self) -> Table | Grid | None:
        """The table or grid under focus, for `e` (None when the pane has nothing)."""
        from grok_tui.widgets.heatmap import Heatmap
        from grok_tui.widgets.result_table import ResultTable

        focused = self.app.focused if self.is_mounted else None
        if focused is not None and self in focused.ancestors:
            if isinstance(focused, ResultTable) and focused.table is not None:
                return focused.table
            if isinstance(focused, Heatmap) and focused.grid is not None:
                return focused.grid
        return self.default_export()

    def focus(self, scroll_visible: bool = True) -> "StudyPane":
        """Focus the pane itself when it can take focus (the app sets ``can_focus`` so that
        arrows reach its checkpoint keys until the user tabs into a table or heatmap);
        otherwise focus :meth:`initial_focus`."""
        if self.can_focus:
            return super().focus(scroll_visible)
        target = self.initial_focus()
        if target is not None:
            target.focus(scroll_visible)
        return self

    def initial_focus(self) -> Widget | None:
        """The first visible table or heatmap of the pane, else its first focusable widget."""
        from grok_tui.widgets.heatmap import Heatmap
        from grok_tui.widgets.result_table import ResultTable

        if not self.is_mounted:
            return None
        mine = [w for w in self.screen.focus_chain if self in w.ancestors]
        preferred = [w for w in mine if isinstance(w, (ResultTable, Heatmap))]
        return (preferred or mine or [None])[0]

    # -- panes that share a selection --------------------------------------------------
    def share_option(self, name: str, value: Any) -> None:
        """The user picked ``name`` = ``value`` here (a neuron): every other pane of the
        screen that FOLLOWS it takes it as its own option, and shows it when next shown."""
        if not self.is_mounted:
            return
        for pane in self.screen.query(StudyPane):
            if pane is not self:
                pane.follow_option(name, value)

    def follow_option(self, name: str, value: Any) -> None:
        """Another pane picked ``name`` = ``value``; the app recomputes this pane's study with
        it when the pane is next shown (its options no longer match what it shows)."""
        if name in self.FOLLOWS and self.options.get(name) != value:
            self.options = {**self.options, name: value}

    # -- for subclasses -----------------------------------------------------------------
    def read(self, result: StudyResult | None = None) -> ResultView:
        """``result`` (default: the one shown) read through the study's declared schema
        (grok_engine.studies.schema): an undeclared name is an error, never a guess."""
        return SCHEMAS[self.STUDY].view(self.result if result is None else result)

    def render_result(self, result: StudyResult) -> None:
        """Fill the widgets from ``result`` (mounted, UI thread)."""

    def render_extra(self, name: str, result: StudyResult | None) -> None:
        """Fill the widgets from an extra study's result (None: it failed)."""

    def default_export(self) -> Table | Grid | None:
        """What `e` exports when no table or grid of the pane has focus."""
        return None

    def on_mount(self) -> None:
        if self.result is not None:
            self.render_result(self.result)
        for name, extra in self.extras.items():
            self.render_extra(name, extra)

    def set_summary(self, text: str, widget_id: str = "summary") -> None:
        self.query_one(f"#{widget_id}", Static).update(Content(text))  # data, never markup

    def action_next_view(self) -> None:
        """Show the next tab of the pane's (first) TabbedContent."""
        tabs = self.query(TabbedContent)
        if not tabs:
            return
        tc = tabs.first()
        # the TabbedContent's own panes (not those of a TabbedContent nested inside one)
        ids = [pane.id for pane in tc.get_child_by_type(ContentSwitcher).children if pane.id]
        if not ids:
            return
        current = tc.active
        nxt = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
        tc.active = nxt

    def active_view(self) -> str:
        tabs = self.query(TabbedContent)
        return tabs.first().active if tabs else ""

