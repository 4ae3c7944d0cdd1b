"""What a :class:`~grok_engine.session.RunSession` tells its front end: typed events.

The session calls its listener with one of these from whichever thread did the work (the
engine thread, the training reader thread, or the caller's thread for :meth:`open`). The
listener must not block: a Textual app posts a message (``post_message`` is thread-safe)
and handles it on the UI thread. No event carries a widget or any UI object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunOpened:
    """The run was read: its checkpoint epochs, its metrics (``grok_engine.train.Metrics``,
    cut at the last checkpoint) and a ``notice`` for what could not be read but hides
    nothing else (corrupt metrics, a divergence marker)."""

    epochs: tuple[int, ...]
    metrics: Any
    notice: str | None = None


@dataclass(frozen=True)
class CheckpointsChanged:
    """The run's checkpoint epochs are now ``epochs``; ``added`` are the new ones.
    ``metrics``: for a run another process trains (:meth:`RunSession.poll`), the run's
    metrics re-read up to its newest checkpoint (``grok_engine.train.Metrics``), or None
    (this session's own training streams them as TrainingProgress)."""

    epochs: tuple[int, ...]
    added: tuple[int, ...]
    metrics: Any = None


@dataclass(frozen=True)
class ResultReady:
    """``result`` (a StudyResult) of ``study`` at ``epoch`` with ``options``, answering the
    request numbered ``request_id``; ``extras``: name -> StudyResult of the extra studies
    asked for (default options) that are ready with it, ``pending``: the extras still being
    computed, each to come as an :class:`ExtraReady` (the result is shown first: at p=113
    the Neurons study takes ~0.3 s, the probe beside it ~1 s)."""

    request_id: int
    study: str
    epoch: int
    options: dict[str, Any]
    result: Any
    extras: dict[str, Any] = field(default_factory=dict)
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraReady:
    """The extra study ``name`` of request ``request_id`` (for ``study`` at ``epoch`` with
    ``options``), one of the ResultReady's ``pending``: ``result``, or ``error`` (one line)."""

    request_id: int
    study: str
    epoch: int
    options: dict[str, Any]
    name: str
    result: Any = None
    error: str = ""


@dataclass(frozen=True)
class Error:
    """Something failed, in one line. ``where``: "open" (the run could not be read),
    "study" (then ``study``/``epoch``/``request_id`` name the request), "training" or
    "export"."""

    where: str
    message: str
    study: str | None = None
    epoch: int | None = None
    request_id: int | None = None


@dataclass(frozen=True)
class TrainingStarted:
    """The training child is running towards ``target_epoch`` (the run's config says so)."""

    target_epoch: int


@dataclass(frozen=True)
class TrainingProgress:
    """A chunk of per-epoch metrics (``grok_engine.train.Metrics``) from the trainer: it is
    at ``epoch`` of ``target_epoch``, ``elapsed_s`` after resuming at ``start_epoch``."""

    chunk: Any
    epoch: int
    target_epoch: int
    elapsed_s: float
    start_epoch: int

    @property
    def eta_s(self) -> float | None:
        """Seconds to ``target_epoch`` at the pace so far; None before the first epoch."""
        done = self.epoch - self.start_epoch
        return self.elapsed_s / done * (self.target_epoch - self.epoch) if done > 0 else None


@dataclass(frozen=True)
class TrainingEnded:
    """The training child exited at ``epoch``: ``stopped`` when asked to, ``error`` (one
    line) when it failed or the run diverged."""

    epoch: int
    stopped: bool
    error: str | None = None


Event = (RunOpened | CheckpointsChanged | ResultReady | ExtraReady | Error | TrainingStarted
         | TrainingProgress | TrainingEnded)
