"""Run configuration: task, model and training settings as validated dataclasses.

Every field has the notebook's value as its default (integer addition, p=10, frac 0.72,
AdamW lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 5000 epochs, checkpoint every 100),
so ``RunConfig()`` *is* the notebook's experiment. Validation happens in ``__post_init__``
and raises :class:`GrokError` naming the bad value and what is allowed.

This module imports no torch: the TUI's form validates with it on first paint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from grok_engine.errors import GrokError

TASKS = ("add", "mod_add", "mod_sub", "mod_mul", "mod_div", "poly")
ACT_FNS = ("relu", "gelu")
NORMALIZATIONS = ("none", "LN")
DEVICES = ("auto", "cpu", "cuda", "mps")
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes an unsigned 64-bit seed


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error line stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for str()
        return f"<a {type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GrokError(f"{name}={short_repr(value)} is not an integer")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise GrokError(f"{name}={short_repr(value)} is out of range: allowed {allowed}")


def _check_float(name: str, value: Any, low: float, high: float | None = None,
                 open_low: bool = False, open_high: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GrokError(f"{name}={short_repr(value)} is not a number")
    too_low = value <= low if open_low else value < low
    too_high = high is not None and (value >= high if open_high else value > high)
    if too_low or too_high or value != value:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        rng = f"{lo}{low}, {high}{hi}" if high is not None else f"{lo}{low}, inf)"
        raise GrokError(f"{name}={value} is out of range: allowed {rng}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GrokError(f"{name}={short_repr(value)} is not allowed: choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class TaskConfig:
    """Which function of (a, b) the model learns, and how the p*p pairs are split."""

    task: str = "add"
    p: int = 10
    frac_train: float = 0.72
    data_seed: int = 598

    def __post_init__(self) -> None:
        _check_choice("task", self.task, TASKS)
        _check_int("p", self.p, 2, 1000)
        _check_float("frac_train", self.frac_train, 0.0, 1.0, open_low=True, open_high=True)
        _check_int("data_seed", self.data_seed, 0, SEED_MAX)
        if self.task == "mod_div" and not is_prime(self.p):
            raise GrokError(f"p={self.p} is not prime: task mod_div needs a prime p")
        n_train = self.n_train
        if n_train == 0:
            raise GrokError(f"frac_train={self.frac_train} leaves the train split empty for p={self.p}")
        if n_train >= self.n_rows:
            raise GrokError(
                f"frac_train={self.frac_train} leaves the test split empty for p={self.p} "
                f"({self.n_rows} rows): lower frac_train")

    @property
    def n_rows(self) -> int:
        """Rows of the dataset: every (a, b) pair, minus b=0 for mod_div."""
        return self.p * self.p - (self.p if self.task == "mod_div" else 0)

    @property
    def n_train(self) -> int:
        return int(self.n_rows * self.frac_train)

    @property
    def d_vocab(self) -> int:
        """Input tokens 0..p-1 and '=' (token p)."""
        return self.p + 1

    @property
    def d_vocab_out(self) -> int:
        """The notebook's 2p outputs for integer addition (sums 0..2p-2), p for the rest."""
        return 2 * self.p if self.task == "add" else self.p


@dataclass(frozen=True)
class ModelConfig:
    """The notebook's HookedTransformerConfig fields (d_vocab/d_vocab_out come from the task)."""

    n_layers: int = 1
    n_heads: int = 4
    d_model: int = 128
    d_head: int = 32
    d_mlp: int = 512
    act_fn: str = "relu"
    normalization: str = "none"
    seed: int = 999

    def __post_init__(self) -> None:
        _check_int("n_layers", self.n_layers, 1, 16)
        _check_int("n_heads", self.n_heads, 1, 64)
        _check_int("d_model", self.d_model, 1, 8192)
        _check_int("d_head", self.d_head, 1, 8192)
        _check_int("d_mlp", self.d_mlp, 1, 65536)
        _check_choice("act_fn", self.act_fn, ACT_FNS)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_int("seed", self.seed, 0, SEED_MAX)


@dataclass(frozen=True)
class TrainConfig:
    """The notebook's optimiser and loop, every number configurable."""

    epochs: int = 5000
    checkpoint_every: int = 100
    lr: float = 1e-3
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    freeze_biases: bool = True
    grokfast: bool = False
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    eval_every: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1, 10_000_000)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_float("lr", self.lr, 0.0, 10.0, open_low=True)
        _check_float("weight_decay", self.weight_decay, 0.0, 100.0)
        _check_float("beta1", self.beta1, 0.0, 1.0, open_high=True)
        _check_float("beta2", self.beta2, 0.0, 1.0, open_high=True)
        _check_float("grokfast_alpha", self.grokfast_alpha, 0.0, 1.0, open_high=True)
        _check_float("grokfast_lamb", self.grokfast_lamb, 0.0, 100.0)
        _check_int("eval_every", self.eval_every, 1)
        _check_choice("device", self.device, DEVICES)
        if not isinstance(self.freeze_biases, bool):
            raise GrokError(f"freeze_biases={short_repr(self.freeze_biases)} is not allowed: true or false")
        if not isinstance(self.grokfast, bool):
            raise GrokError(f"grokfast={short_repr(self.grokfast)} is not allowed: true or false")


# Presets change training settings only; the task and model stay as given.
# "fast": the Grokfast EMA gradient filter (Lee et al. 2024, alpha 0.98, lamb 2.0) with a 10x
# learning rate and 4x weight decay, test loss every 10 epochs. Calibrated on p=113 mod_add,
# frac 0.3 (CPU, grokfast on, eval every 10): lr 3e-3/wd 1 had 19% test accuracy after 2500
# epochs; lr 5e-3/wd 1 reached 99% at epoch 2260, lr 1e-2/wd 1 at 1390, lr 5e-3/wd 2 at 1260,
# lr 1e-2/wd 2 at 630, lr 5e-3/wd 4 at 590, lr 1e-2/wd 4 at 170-200 (seeds 999, 1, 2; 100%
# and stable at 500); lr 2e-2/wd 2 diverged. What matters most is lr * weight_decay.
PRESETS: dict[str, dict[str, Any]] = {
    "notebook": {},
    "fast": {"grokfast": True, "grokfast_alpha": 0.98, "grokfast_lamb": 2.0, "lr": 1e-2,
             "weight_decay": 4.0, "eval_every": 10},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``RunConfig()`` is the notebook's experiment."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"task": dataclasses.asdict(self.task), "model": dataclasses.asdict(self.model),
                "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict (config.json, a TOML file); unknown keys are refused."""
        if not isinstance(data, dict):
            raise GrokError(f"config={short_repr(data)} is not a table of sections task/model/train")
        unknown = set(data) - {"task", "model", "train"}
        if unknown:
            raise GrokError(f"config section {sorted(unknown)[0]!r} is unknown: allowed task, model, train")
        parts = {}
        for name, klass in (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig)):
            section = data.get(name)
            if section is None:
                section = {}
            if not isinstance(section, dict):
                raise GrokError(f"config section {name!r} is {short_repr(section)}, not a table: write "
                                f"[{name}] and its fields ({', '.join(field_names(klass))})")
            parts[name] = make_section(klass, section, prefix=name)
        return cls(**parts)

    def replace(self, **overrides: Any) -> "RunConfig":
        """Copy with flat overrides, each routed to the section that owns the field."""
        sections = {"task": {}, "model": {}, "train": {}}
        for key, value in overrides.items():
            sections[section_of(key)][key] = value
        return RunConfig(
            task=dataclasses.replace(self.task, **sections["task"]),
            model=dataclasses.replace(self.model, **sections["model"]),
            train=dataclasses.replace(self.train, **sections["train"]),
        )


def field_names(klass: type) -> list[str]:
    return [f.name for f in fields(klass)]


def section_of(key: str) -> str:
    for name, klass in (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig)):
        if key in field_names(klass):
            return name
    raise GrokError(f"config field {key!r} is unknown")


def make_section(klass: type, values: dict[str, Any], prefix: str = "") -> Any:
    known = field_names(klass)
    for key in values:
        if key not in known:
            where = f"{prefix}." if prefix else ""
            raise GrokError(f"config field {where}{key!r} is unknown: allowed {', '.join(known)}")
    # ints written as floats in TOML/JSON (1e3) are accepted where an int is expected
    clean = {}
    for f in fields(klass):
        if f.name in values:
            v = values[f.name]
            if f.type == "int" and isinstance(v, float) and v.is_integer():
                v = int(v)
            if f.type == "float" and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            clean[f.name] = v
    return klass(**clean)


def apply_preset(config: RunConfig, preset: str) -> RunConfig:
    _check_choice("preset", preset, tuple(PRESETS))
    return RunConfig(task=config.task, model=config.model,
                     train=dataclasses.replace(config.train, **PRESETS[preset]))
