"""The four phases of Liu et al. on synthetic accuracy curves (grok_engine.sweep.phases)."""

from __future__ import annotations

import numpy as np
import pytest

from grok_engine.sweep.phases import MIN_DELAY, PHASES, classify, find_member_phase


def sigmoid_curves(n: int, train_mid: float | None, test_mid: float | None, width: float = 5.0,
                   eval_every: int = 1, noise: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Accuracy curves [n] that rise from chance to 1 around ``*_mid`` (None: stay at 0.3),
    test evaluated every ``eval_every`` epochs (NaN between), with optional noise."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(1, n + 1)

    def curve(mid):
        if mid is None:
            base = np.full(n, 0.3)
        else:
            base = 0.05 + 0.95 / (1 + np.exp(-(epoch - mid) / width))
        return np.clip(base + noise * rng.standard_normal(n), 0, 1)

    test = curve(test_mid)
    test[(epoch % eval_every) != 0] = np.nan
    return {"epoch": epoch, "train_acc": curve(train_mid), "test_acc": test}


@pytest.mark.parametrize("train_mid, test_mid, phase", [
    (50, 60, "comprehension"),  # test follows within 10 epochs
    (100, 180, "comprehension"),  # delay 80 <= 1 x the ~123 epochs train took
    (50, 400, "grokking"),
    (None, None, "confusion"),
    (None, 200, "confusion"),  # test accuracy alone never makes a run anything but confused
    (50, None, "memorisation"),
])
def test_synthetic_curves_get_their_phase(train_mid, test_mid, phase):
    got = find_member_phase(sigmoid_curves(1000, train_mid, test_mid))
    assert got.phase == phase
    assert got.phase in PHASES and got.final


def test_epochs_and_delay_are_the_first_crossings():
    m = sigmoid_curves(1000, 50, 400)
    got = find_member_phase(m)
    expect_train = int(m["epoch"][np.argmax(m["train_acc"] >= 0.99)])
    expect_test = int(m["epoch"][np.argmax(np.nan_to_num(m["test_acc"]) >= 0.99)])
    assert (got.train_99, got.test_99, got.delay) == (expect_train, expect_test, expect_test - expect_train)


def test_unevaluated_test_epochs_are_skipped():
    m = sigmoid_curves(1000, 50, 400, eval_every=10)
    got = find_member_phase(m)
    assert got.test_99 % 10 == 0 and got.phase == "grokking"


def test_noise_spike_counts_once_reached():
    m = sigmoid_curves(1000, 50, None, noise=0.0)
    m["test_acc"][700] = 1.0  # one lucky epoch: reached is reached (the rule is the first crossing)
    assert find_member_phase(m).test_99 == 701


def test_delay_boundary_between_comprehension_and_grokking():
    assert classify(100, 200) == "comprehension"  # delay == ratio * train_99
    assert classify(100, 201) == "grokking"
    assert classify(2, 2 + MIN_DELAY) == "comprehension"  # below the eval resolution
    assert classify(2, 3 + MIN_DELAY) == "grokking"
    assert classify(100, 80) == "comprehension"  # test first: negative delay
    assert classify(100, 400, delay_ratio=5.0) == "comprehension"


def test_unfinished_runs_are_not_final_until_test_fits():
    m = sigmoid_curves(300, 50, None)
    assert not find_member_phase(m, epochs_planned=1000).final
    assert find_member_phase(m, epochs_planned=300).final
    assert find_member_phase(sigmoid_curves(300, 50, 100), epochs_planned=1000).final


def test_no_metrics_has_no_phase():
    empty = {"epoch": np.zeros(0, np.int64), "train_acc": np.zeros(0), "test_acc": np.zeros(0)}
    got = find_member_phase(empty, epochs_planned=10)
    assert got.phase is None and got.train_99 is None and not got.final
