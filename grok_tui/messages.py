"""Messages that thread workers post back to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is thread-safe) and
the screen's handler updates the widgets on the UI thread.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineLoaded(Message):
    """The engine is imported; ``run`` (a grok_engine.store.Run) is open, or the run list is read.

    ``summaries``: RunSummary rows for the run picker (when no run was asked for).
    """

    def __init__(self, store: Any, run: Any | None, summaries: list[Any]) -> None:
        super().__init__()
        self.store = store
        self.run = run
        self.summaries = summaries


class EngineWarm(Message):
    """The studies' imports (transformer_lens, scikit-learn) are done: the heap can freeze."""


class EngineFailed(Message):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class SessionEvent(Message):
    """An event of a screen's RunSession (one of grok_engine.session.events), posted from
    the session's threads; the screen handles it on the UI thread."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class ExportDone(Message):
    def __init__(self, paths: list[Any], error: str | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.error = error
