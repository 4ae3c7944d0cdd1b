"""The phase of a run in the four classes of Liu et al. ("Towards Understanding Grokking:
An Effective Theory of Representation Learning", 2022, figure 1 / section 4), read off its
accuracy curves, and the grokking delay.

Two epochs come first:

- ``train_99``: the first epoch with train accuracy >= ``ACC_THRESHOLD`` (0.99);
- ``test_99``: the first evaluated epoch (test entries that are NaN, ``eval_every > 1``,
  are skipped) with test accuracy >= ``ACC_THRESHOLD``;
- ``delay`` = ``test_99 - train_99`` (epochs; None unless both are reached). It can be
  negative (the test set is fitted first), which counts as comprehension.

Then the phase, in this order:

1. **confusion**: the train set is never fitted (no ``train_99``) within the epochs run.
2. **memorisation**: the train set is fitted but the test set is not (no ``test_99``).
3. **comprehension**: test follows train within a short delay:
   ``delay <= DELAY_RATIO * train_99`` with ``DELAY_RATIO`` = 1, i.e. the test set is
   fitted within as many epochs again as the train set took (Liu et al. call a run
   grokking when generalisation comes "much later" than memorisation; a ratio rather
   than a fixed number of steps keeps the rule free of the task's and the optimiser's
   pace), or ``delay <= MIN_DELAY`` (10 epochs: the resolution of the usual
   ``eval_every``, below which no delay can be told).
4. **grokking**: test reaches 99% long after train: ``delay`` larger than both.

A run that has not used its whole budget (still training, stopped, diverged) may still
move from confusion or memorisation: ``final`` says whether its phase is settled (the run
reached its planned epochs, or already has a 99% test epoch, after which neither epoch
moves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PHASES = ("comprehension", "grokking", "memorisation", "confusion")
ACC_THRESHOLD = 0.99
DELAY_RATIO = 1.0
MIN_DELAY = 10  # epochs


@dataclass(frozen=True)
class MemberPhase:
    """A run's phase (one of PHASES; None without any metrics), its 99% epochs and the
    grokking delay (None where not reached) and whether the phase is settled."""

    phase: str | None
    train_99: int | None
    test_99: int | None
    delay: int | None
    final: bool

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "train_99": self.train_99, "test_99": self.test_99,
                "delay": self.delay, "final": self.final}


def first_epoch_at(epoch: np.ndarray, acc: np.ndarray, threshold: float = ACC_THRESHOLD) -> int | None:
    """The first ``epoch[i]`` with ``acc[i] >= threshold`` (NaN never counts); epoch, acc: [n]."""
    hits = np.flatnonzero(np.nan_to_num(np.asarray(acc, dtype=np.float64), nan=-1.0) >= threshold)
    return int(np.asarray(epoch)[hits[0]]) if len(hits) else None


def classify(train_99: int | None, test_99: int | None, delay_ratio: float = DELAY_RATIO,
             min_delay: int = MIN_DELAY) -> str:
    """Rules 1-4 of the module docstring on the two 99% epochs."""
    if train_99 is None:
        return "confusion"
    if test_99 is None:
        return "memorisation"
    delay = test_99 - train_99
    return "comprehension" if delay <= max(delay_ratio * train_99, min_delay) else "grokking"


def find_member_phase(metrics: Any, epochs_planned: int | None = None,
                      acc_threshold: float = ACC_THRESHOLD, delay_ratio: float = DELAY_RATIO,
                      min_delay: int = MIN_DELAY) -> MemberPhase:
    """The phase of one run from its metrics (a :class:`grok_engine.train.Metrics` or a dict
    of arrays ``epoch``, ``train_acc``, ``test_acc`` [n]). ``epochs_planned``: the run's
    budget (None: the metrics are the whole run).

    >>> e = np.arange(1, 401)
    >>> m = {"epoch": e, "train_acc": (e >= 50) * 1.0, "test_acc": (e >= 300) * 1.0}
    >>> find_member_phase(m).as_dict()
    {'phase': 'grokking', 'train_99': 50, 'test_99': 300, 'delay': 250, 'final': True}
    """
    get = (lambda n: metrics[n]) if isinstance(metrics, dict) else (lambda n: getattr(metrics, n))
    epoch = np.asarray(get("epoch"))
    if not len(epoch):
        return MemberPhase(None, None, None, None, False)
    train_99 = first_epoch_at(epoch, get("train_acc"), acc_threshold)
    test_99 = first_epoch_at(epoch, get("test_acc"), acc_threshold)
    delay = test_99 - train_99 if train_99 is not None and test_99 is not None else None
    done = epochs_planned is None or int(epoch[-1]) >= epochs_planned
    final = done or (train_99 is not None and test_99 is not None)
    return MemberPhase(classify(train_99, test_99, delay_ratio, min_delay), train_99, test_99, delay, final)
