"""Every number grok-tui shows, formatted in one place.

A missing value (None, NaN) reads "-" everywhere but in grids and tables (``compact``:
"NaN", a cell of data) and in ``grok-tui export``'s headline (``scalar``: "nan", as CSV
writes it). Light (no numpy, no Textual): the headless commands use it too.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MISSING = "-"


def is_missing(x: Any) -> bool:
    """None, or a float (Python's or numpy's) that is NaN."""
    if x is None:
        return True
    return (isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral)
            and math.isnan(x))


def number(x: Any, spec: str = ".3g") -> str:
    """``x`` through the format ``spec`` (a loss ".3g", an accuracy ".4f"); "-" if missing."""
    return MISSING if is_missing(x) else format(x, spec)


def digits(x: Any, n: int = 4) -> str:
    """``n`` significant digits; an integer in full; "-" if missing."""
    if is_missing(x):
        return MISSING
    if isinstance(x, int):
        return str(x)
    return f"{float(x):.{n}g}"


def percent(x: Any) -> str:
    """0.4213 -> '42.1%'; "-" if missing."""
    return MISSING if is_missing(x) else f"{100 * float(x):.1f}%"


def compact(value: Any) -> str:
    """One value of a grid or table, at most ~9 characters: 4 significant digits, exponent
    form outside [1e-3, 1e5), integers and booleans as they are, NaN as 'NaN', None empty."""
    if value is None:
        return ""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":  # numpy bool
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def scalar(value: Any) -> str:
    """A study's headline scalar as ``grok-tui export`` prints it: 6 significant digits,
    lists in brackets, NaN as 'nan', None and booleans by name."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    try:  # numpy scalars
        return scalar(value.item())
    except (AttributeError, ValueError):
        return str(value)


def duration(seconds: float) -> str:
    """Elapsed time as m:ss, or h:mm:ss from an hour."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
