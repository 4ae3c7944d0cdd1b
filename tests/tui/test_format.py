"""grok_tui.format: every number the app and the headless commands show."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grok_tui import format as fmt


@pytest.mark.parametrize("value", [None, math.nan, np.float32("nan"), np.float64("nan")])
def test_missing_values_read_as_a_dash(value):
    assert fmt.number(value) == fmt.digits(value) == fmt.percent(value) == "-"


def test_number_digits_percent():
    assert fmt.number(0.012345) == "0.0123" and fmt.number(0.98765, ".4f") == "0.9877"
    assert fmt.digits(1234) == "1234" and fmt.digits(0.123456, 3) == "0.123"
    assert fmt.percent(0.4213) == "42.1%"


@pytest.mark.parametrize("value, text", [(None, ""), (True, "True"), (np.bool_(False), "False"),
                                         (np.int64(7), "7"), (math.nan, "NaN"), (0.0, "0"),
                                         (1234.5678, "1235"), (1e-4, "1.000e-04"), (123456.0, "1.235e+05")])
def test_compact_values_of_grids_and_tables(value, text):
    assert fmt.compact(value) == text


def test_scalars_of_the_export_headline():
    assert fmt.scalar(np.float32(0.5)) == "0.5" and fmt.scalar(math.nan) == "nan"
    assert fmt.scalar([1, 2.123456789]) == "[1, 2.12346]" and fmt.scalar(None) == "None"


def test_durations():
    assert fmt.duration(65) == "1:05" and fmt.duration(3725) == "1:02:05" and fmt.duration(-3) == "0:00"
