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


class RunOpened(Message):
    """A run's checkpoint epochs and metrics (grok_engine.train.Metrics) were read;
    ``notice``: what could not be read but hides nothing else (a corrupt metrics file)."""

    def __init__(self, run: Any, epochs: list[int], metrics: Any, notice: str | None = None) -> None:
        super().__init__()
        self.run = run
        self.epochs = epochs
        self.metrics = metrics
        self.notice = notice


class StudyReady(Message):
    """``result`` (a StudyResult) of ``study`` at ``epoch`` with ``options``."""

    def __init__(self, study: str, epoch: int, options: dict[str, Any], result: Any,
                 extras: dict[str, Any] | None = None, extra_errors: list[str] | None = None) -> None:
        super().__init__()
        self.study = study
        self.epoch = epoch
        self.options = options
        self.result = result
        self.extras = extras or {}  # name -> StudyResult of the pane's EXTRA_STUDIES
        self.extra_errors = extra_errors or []


class StudyFailed(Message):
    def __init__(self, study: str, epoch: int, message: str) -> None:
        super().__init__()
        self.study = study
        self.epoch = epoch
        self.message = message


class TrainingProgress(Message):
    """A chunk of per-epoch metrics (grok_engine.train.Metrics) from the trainer."""

    def __init__(self, chunk: Any, epoch: int, target_epoch: int, elapsed_s: float,
                 start_epoch: int) -> None:
        super().__init__()
        self.chunk = chunk
        self.epoch = epoch
        self.target_epoch = target_epoch
        self.elapsed_s = elapsed_s
        self.start_epoch = start_epoch


class CheckpointSaved(Message):
    """The run store has written the checkpoint of ``epoch`` (the file is on disk)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch


class TrainingFinished(Message):
    """The training worker returned: at ``epoch``; ``error`` set when it failed."""

    def __init__(self, epoch: int, stopped: bool, error: str | None = None) -> None:
        super().__init__()
        self.epoch = epoch
        self.stopped = stopped
        self.error = error


class ExportDone(Message):
    def __init__(self, paths: list[Any], error: str | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.error = error
