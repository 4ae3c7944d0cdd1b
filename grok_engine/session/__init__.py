"""One open run for every front end: :class:`RunSession` (checkpoints, studies with one
context cache, training through the training child, export) and the typed events it emits.

No UI here; importing this package loads neither torch nor the run store (they are
imported where the session first needs them), so a screen can import it at first paint.
"""

from grok_engine.session.events import (CheckpointsChanged, Error, Event, ExtraReady, ResultReady,
                                        RunOpened, TrainingEnded, TrainingProgress, TrainingStarted)
from grok_engine.session.run_session import Request, RunSession, describe, options_key
from grok_engine.session.training import TrainingClient, extend_plan

__all__ = ["RunSession", "Request", "RunOpened", "CheckpointsChanged", "ResultReady", "ExtraReady", "Error",
           "TrainingStarted", "TrainingProgress", "TrainingEnded", "Event", "TrainingClient",
           "extend_plan", "describe", "options_key"]
