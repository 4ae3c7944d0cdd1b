"""A sweep's grid: axes of train-flag values, and their cross product (the members).

    --grid weight-decay=0.1,0.3,1 --grid seed=1,2      6 members (3 x 2)
    --grid lr=log:1e-3:1e-1:5                          5 log-spaced values, ends included

or, in the ``--config`` TOML file, a ``[sweep]`` table beside [task] [model] [train]::

    [sweep]
    weight-decay = [0.1, 0.3, 1.0]
    lr = "log:1e-3:1e-1:5"

A FLAG is a train flag's name without its dashes (``weight-decay``, ``frac-train``,
``seed``, ``grokfast``, ...). The command hands this module the train parser's flags as a
table (:class:`FlagSpec`), so a value is parsed by exactly the function ``grok-tui train``
parses it with, and each member's RunConfig is built here so that its own validation
speaks (``frac-train=1`` is refused as the train flag refuses it). Every problem is a
:class:`GridError`, one line naming the axis and the value.
"""

from __future__ import annotations

import argparse
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from grok_engine.config import RunConfig, short_repr
from grok_engine.errors import GrokError

MAX_MEMBERS = 10_000  # a bigger grid is most likely a typo: it needs --yes
MAX_AXIS_VALUES = 1_000_000  # one log: axis, even with --yes (its values are held in memory)
TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")
# Flags that are the whole sweep's, not a member's: one device trains a pack.
NOT_AXES = {"device": "the device is the whole sweep's: give --device instead"}


class GridError(GrokError):
    """A bad --grid, [sweep] table or grid size; the message is one line."""


@dataclass(frozen=True)
class FlagSpec:
    """One train flag: its name without dashes, the RunConfig field it sets and the
    function that parses its text (raises ValueError/TypeError, or argparse's
    ArgumentTypeError, on a bad value). ``is_bool``: an on/off flag (``--grokfast``)."""

    name: str
    field: str
    parse: Callable[[str], Any]
    is_bool: bool = False


@dataclass(frozen=True)
class Axis:
    flag: str  # train flag name without dashes, e.g. "weight-decay"
    values: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"flag": self.flag, "values": list(self.values)}


@dataclass(frozen=True)
class Member:
    """One point of the grid: its values (flag -> value) and its validated config."""

    values: dict[str, Any]
    config: RunConfig


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text[:40]!r} is not on/off: use true or false")


def _spec(flags: dict[str, FlagSpec], name: str, where: str) -> FlagSpec:
    key = name.strip().replace("_", "-")
    if key in NOT_AXES:
        raise GridError(f"{where}: {key} cannot be a grid axis ({NOT_AXES[key]})")
    if key not in flags:
        allowed = ", ".join(sorted(set(flags) - set(NOT_AXES)))
        raise GridError(f"{where}: {short_repr(name, 40)} is not a train flag: allowed {allowed}")
    return flags[key]


def _parse_value(spec: FlagSpec, text: str, where: str) -> Any:
    if not text.strip():
        raise GridError(f"{where}: an empty value is not allowed (write V1,V2,...)")
    try:
        return parse_bool(text) if spec.is_bool else spec.parse(text.strip())
    except (argparse.ArgumentTypeError, ValueError, TypeError, ArithmeticError) as exc:
        raise GridError(f"{where}: {exc}") from None


def log_values(spec: FlagSpec, text: str, where: str) -> list[str]:
    """``log:START:STOP:N`` -> N texts, log-spaced from START to STOP (both included);
    rounded to integers for an integer flag."""
    if spec.is_bool or spec.parse is str:
        raise GridError(f"{where}: log: values need a numeric flag, not {spec.name}")
    parts = text.split(":")
    if len(parts) != 4:
        raise GridError(f"{where}: {short_repr(text, 40)} is not log:START:STOP:N (e.g. log:1e-3:1:7)")
    try:
        start, stop = float(parts[1]), float(parts[2])
        count = int(parts[3])
    except ValueError:
        raise GridError(f"{where}: {short_repr(text, 40)} is not log:START:STOP:N with numbers "
                        f"START, STOP and an integer N") from None
    if not (math.isfinite(start) and math.isfinite(stop) and start > 0 and stop > 0):
        raise GridError(f"{where}: log:START:STOP:N needs START and STOP > 0 and finite, "
                        f"got {parts[1]} and {parts[2]}")
    if count < 0:
        raise GridError(f"{where}: log:...:N needs N >= 1, got {count}")
    if count > MAX_AXIS_VALUES:
        raise GridError(f"{where}: log:...:N with N={count} is more than {MAX_AXIS_VALUES} values")
    if count == 0:
        return []  # the caller refuses the empty axis
    if count == 1:
        points = [start]
    else:
        ratio = math.log(stop / start) / (count - 1)
        points = [start * math.exp(ratio * i) for i in range(count)]
        points[-1] = stop
    integer = _is_integer_flag(spec)
    return [str(round(x)) if integer else f"{x:.12g}" for x in points]


def _is_integer_flag(spec: FlagSpec) -> bool:
    try:
        return isinstance(spec.parse("1"), int) and not isinstance(spec.parse("1"), bool)
    except Exception:  # noqa: BLE001 - a flag that takes no "1" is not an integer flag
        return False


def parse_axis(flag: str, texts: Iterable[str], flags: dict[str, FlagSpec], where: str) -> Axis:
    """The axis of ``flag`` from its value texts (each a value or a ``log:`` range)."""
    spec = _spec(flags, flag, where)
    where = f"{where} {spec.name}"
    values: list[Any] = []
    seen: set[Any] = set()
    for text in texts:
        expanded = log_values(spec, text.strip(), where) if text.strip().startswith("log:") else [text]
        for item in expanded:
            value = _parse_value(spec, item, where)
            if value in values:
                raise GridError(f"{where}: the value {short_repr(value, 40)} is given twice "
                                f"(two members would be the same run)")
            values.append(value)
            seen.add(value)
    if not values:
        raise GridError(f"{where}: the axis is empty: give at least one value")
    return Axis(spec.name, tuple(values))


def parse_grid_arg(text: str, flags: dict[str, FlagSpec]) -> Axis:
    """One ``--grid FLAG=V1,V2,...`` argument."""
    if "=" not in text:
        raise GridError(f"--grid {short_repr(text, 40)} is not FLAG=V1,V2,... (e.g. weight-decay=0.1,1)")
    flag, _, rest = text.partition("=")
    if not rest.strip():
        raise GridError(f"--grid {short_repr(text, 40)}: the axis is empty: give at least one value")
    return parse_axis(flag, rest.split(","), flags, "--grid")


def parse_sweep_table(table: Any, flags: dict[str, FlagSpec], path: str) -> list[Axis]:
    """The axes of a TOML ``[sweep]`` table: FLAG = [values] or FLAG = "V1,V2" / "log:...". """
    where = f"--config {path!r} [sweep]"
    if not isinstance(table, dict):
        raise GridError(f"{where} is {short_repr(table, 40)}, not a table of FLAG = [values]")
    axes = []
    for flag, raw in table.items():
        if isinstance(raw, list):
            texts = [_toml_text(v) for v in raw]
        elif isinstance(raw, str):
            texts = raw.split(",")
        elif isinstance(raw, (int, float)):  # one value: a single-point axis
            texts = [_toml_text(raw)]
        else:
            raise GridError(f"{where} {flag}: {short_repr(raw, 40)} is not a list of values or a "
                            f"\"V1,V2\" / \"log:START:STOP:N\" string")
        axes.append(parse_axis(flag, texts, flags, where))
    return axes


def _toml_text(value: Any) -> str:
    """A TOML array item as the text a flag parses (true -> "true", 1e-3 -> "0.001")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return short_repr(value, 40)  # refused by the flag's parser, naming it
    return str(value)


def check_axes(axes: list[Axis], fixed: Iterable[str] = ()) -> None:
    """Refuse a flag on two axes, or on an axis and given as a plain flag (``fixed``:
    the flags given on the command line, names without dashes)."""
    seen: set[str] = set()
    fixed = set(fixed)
    for axis in axes:
        if axis.flag in seen:
            raise GridError(f"--grid {axis.flag} is given twice: put all its values on one axis")
        if axis.flag in fixed:
            raise GridError(f"--grid {axis.flag} and --{axis.flag} both set {axis.flag}: "
                            f"give one of them")
        seen.add(axis.flag)


def grid_size(axes: list[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def members(base: RunConfig, axes: list[Axis], flags: dict[str, FlagSpec],
            allow_large: bool = False) -> list[Member]:
    """The cross product of ``axes`` (first axis slowest), each point's RunConfig built
    from ``base`` and validated; refused beyond MAX_MEMBERS unless ``allow_large``."""
    if not axes:
        raise GridError("a sweep needs at least one --grid FLAG=V1,V2,... (or a [sweep] table)")
    size = grid_size(axes)
    if size > MAX_MEMBERS and not allow_large:
        shape = " x ".join(str(len(a.values)) for a in axes)
        raise GridError(f"the grid has {size} members ({shape}), more than {MAX_MEMBERS}: "
                        f"give --yes to train them all")
    out = []
    for point in itertools.product(*(a.values for a in axes)):
        values = {a.flag: v for a, v in zip(axes, point)}
        overrides = {flags[f].field: v for f, v in values.items()}
        try:
            config = base.replace(**overrides)
        except GrokError as exc:
            shown = " ".join(f"{f}={v}" for f, v in values.items())
            raise GridError(f"--grid member {shown}: {exc}") from None
        out.append(Member(values, config))
    return out
