"""Config validation, round trips and presets."""

from __future__ import annotations

import json

import pytest

from grok_engine.config import (PRESETS, ModelConfig, RunConfig, TaskConfig, TrainConfig,
                                apply_preset)
from grok_engine.errors import GrokError


def refused(build, *needles: str) -> str:
    """Call build(); it must raise a one-line GrokError containing every needle."""
    with pytest.raises(GrokError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_defaults_are_the_notebook():
    cfg = RunConfig()
    assert (cfg.task.task, cfg.task.p, cfg.task.frac_train, cfg.task.data_seed) == ("add", 10, 0.72, 598)
    m = cfg.model
    assert (m.n_layers, m.n_heads, m.d_model, m.d_head, m.d_mlp, m.act_fn, m.normalization, m.seed) == (
        1, 4, 128, 32, 512, "relu", "none", 999)
    t = cfg.train
    assert (t.epochs, t.checkpoint_every, t.lr, t.weight_decay, t.beta1, t.beta2, t.freeze_biases,
            t.grokfast, t.eval_every) == (5000, 100, 1e-3, 1.0, 0.9, 0.98, True, False, 1)


@pytest.mark.parametrize("build, needles", [
    (lambda: TaskConfig(p=1), ("p=1",)),
    (lambda: TaskConfig(p=0), ("p=0",)),
    (lambda: TaskConfig(frac_train=0.0), ("frac_train=0.0",)),
    (lambda: TaskConfig(frac_train=1.0), ("frac_train=1.0",)),
    (lambda: TaskConfig(frac_train=1.5), ("frac_train=1.5",)),
    (lambda: TaskConfig(frac_train=-0.2), ("frac_train=-0.2",)),
    (lambda: TaskConfig(frac_train=float("nan")), ("frac_train=nan",)),
    (lambda: TaskConfig(task="mod_div", p=10, frac_train=0.5), ("p=10", "prime")),
    (lambda: TaskConfig(task="mod_div", p=9, frac_train=0.5), ("p=9", "prime")),
    (lambda: TaskConfig(task="nope"), ("'nope'", "mod_add")),
    # int(n_rows * frac) < n_rows for every frac < 1, so only the train split can come out empty
    (lambda: TaskConfig(p=2, frac_train=0.2), ("frac_train=0.2", "train split")),
    (lambda: TaskConfig(task="mod_div", p=2, frac_train=0.4), ("frac_train=0.4", "train split")),
    (lambda: TaskConfig(p=5, frac_train=0.01), ("frac_train=0.01", "train split")),
    (lambda: TaskConfig(p="7"), ("p='7'",)),
    (lambda: ModelConfig(d_model=0), ("d_model=0",)),
    (lambda: ModelConfig(act_fn="tanh"), ("'tanh'", "relu")),
    (lambda: ModelConfig(normalization="RMS"), ("'RMS'", "LN")),
    (lambda: TrainConfig(epochs=0), ("epochs=0",)),
    (lambda: TrainConfig(lr=0.0), ("lr=0.0",)),
    (lambda: TrainConfig(beta2=1.0), ("beta2=1.0",)),
    (lambda: TrainConfig(device="tpu"), ("'tpu'",)),
    (lambda: TrainConfig(grokfast="yes"), ("grokfast='yes'",)),
])
def test_invalid_values_refused_naming_the_value(build, needles):
    refused(build, *needles)


def test_valid_edge_values_accepted():
    TaskConfig(p=2, frac_train=0.5)  # 2 train rows, 2 test rows
    assert TaskConfig(p=2, frac_train=0.9).n_train == 3  # the test split keeps its one row
    TaskConfig(task="mod_div", p=2, frac_train=0.5)  # p=2 is prime: rows (0,1), (1,1)
    TaskConfig(task="mod_div", p=13, frac_train=0.3)


def test_round_trip_through_json():
    cfg = RunConfig(
        task=TaskConfig(task="mod_sub", p=11, frac_train=0.35, data_seed=3),
        model=ModelConfig(n_layers=2, n_heads=2, d_model=32, d_head=16, d_mlp=64, act_fn="gelu",
                          normalization="LN", seed=5),
        train=TrainConfig(epochs=77, checkpoint_every=7, lr=3e-3, weight_decay=0.5, grokfast=True,
                          grokfast_alpha=0.9, grokfast_lamb=1.5, eval_every=3, device="cpu",
                          freeze_biases=False))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert RunConfig.from_dict(data) == cfg
    assert RunConfig.from_dict(RunConfig().to_dict()) == RunConfig()


def test_from_dict_fills_defaults_and_accepts_toml_style_numbers():
    cfg = RunConfig.from_dict({"task": {"p": 7, "task": "mod_add", "frac_train": 0.5},
                               "train": {"epochs": 1e3, "weight_decay": 1}})
    assert cfg.train.epochs == 1000 and isinstance(cfg.train.epochs, int)
    assert cfg.train.weight_decay == 1.0 and cfg.model == ModelConfig()


@pytest.mark.parametrize("data, needles", [
    ({"task": {"q": 3}}, ("'q'",)),
    ({"model": {"d_modle": 3}}, ("d_modle",)),
    ({"training": {}}, ("'training'",)),
    ({"task": {"p": 1}}, ("p=1",)),
])
def test_from_dict_refuses_unknown_keys_and_bad_values(data, needles):
    refused(lambda: RunConfig.from_dict(data), *needles)


def test_replace_routes_flat_fields():
    cfg = RunConfig().replace(p=7, task="mod_add", d_model=32, epochs=9)
    assert (cfg.task.p, cfg.task.task, cfg.model.d_model, cfg.train.epochs) == (7, "mod_add", 32, 9)
    refused(lambda: RunConfig().replace(nonsense=1), "'nonsense'")
    refused(lambda: RunConfig().replace(p=1), "p=1")


def test_presets():
    base = RunConfig().replace(task="mod_add", p=11, frac_train=0.3, d_model=32)
    assert apply_preset(base, "notebook") == base
    fast = apply_preset(base, "fast")
    assert fast.task == base.task and fast.model == base.model  # training settings only
    for key, value in PRESETS["fast"].items():
        assert getattr(fast.train, key) == value
    assert fast.train.grokfast is True and fast.train != base.train
    refused(lambda: apply_preset(base, "turbo"), "'turbo'", "fast")
