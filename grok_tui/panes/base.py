"""The contract between the app and its panes.

A pane shows one study of grok_engine for the selected checkpoint. The app computes the
study in a thread worker (never on the UI thread) and calls :meth:`StudyPane.show` with the
result; the pane only renders. A pane whose study takes options (a neuron, the components
to keep) posts :class:`StudyPane.OptionsChanged` and the app recomputes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.containers import Vertical
from textual.message import Message

from grok_engine.results import Grid, StudyResult, Table


class StudyPane(Vertical):
    """Base of every study pane. Subclasses set STUDY, TITLE, KEY and BINDINGS."""

    STUDY: ClassVar[str] = ""  # registry name in grok_engine.studies.STUDY_MODULES
    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # number key that shows this pane

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
        self.border_title = self.TITLE

    def show(self, result: StudyResult) -> None:
        """Render ``result`` (UI thread). Subclasses extend; call super().show first."""
        self.result = result
        self.loading = False

    def show_loading(self, epoch: int) -> None:
        """The study for ``epoch`` is being computed."""
        self.loading = True

    def show_error(self, message: str) -> None:
        """The study failed; show ``message`` instead of a traceback."""
        self.loading = False
        self.notify(message, severity="error", title=self.TITLE)

    def export_target(self) -> Table | Grid | None:
        """The table or grid under focus, for `e` (None when the pane has nothing)."""
        return None
