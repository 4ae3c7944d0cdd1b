"""The sweep grid: --grid axes, log: ranges, the TOML [sweep] table, the cross product, and
every way a grid is refused (GridError, one line naming the axis and the value)."""

from __future__ import annotations

import math

import pytest

from grok_engine.config import RunConfig
from grok_engine.sweep.grid import (MAX_MEMBERS, GridError, check_axes, grid_size, members,
                                    parse_grid_arg, parse_sweep_table)
from grok_tui.sweep_cmd import flag_table

FLAGS = flag_table()
BASE = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, d_model=32, n_heads=2,
                           d_head=16, d_mlp=64, epochs=10, device="cpu")


def axis(text: str):
    return parse_grid_arg(text, FLAGS)


def test_the_flags_are_the_train_parsers_with_its_types():
    from grok_tui.cli import _number, _positive_int

    assert FLAGS["weight-decay"].parse is _number and FLAGS["weight-decay"].field == "weight_decay"
    assert FLAGS["seed"].parse is _positive_int
    assert FLAGS["grokfast"].is_bool
    assert {"task", "p", "d-mlp", "data-seed", "lr", "frac-train"} <= set(FLAGS)
    assert "run-id" not in FLAGS and "resume" not in FLAGS


def test_cross_product_first_axis_slowest_each_member_validated():
    axes = [axis("weight-decay=0.1,1"), axis("seed=1,2,3"), axis("grokfast=on,off")]
    got = members(BASE, axes, FLAGS)
    assert len(got) == grid_size(axes) == 12
    assert got[0].values == {"weight-decay": 0.1, "seed": 1, "grokfast": True}
    assert got[1].values == {"weight-decay": 0.1, "seed": 1, "grokfast": False}
    assert got[-1].values == {"weight-decay": 1.0, "seed": 3, "grokfast": False}
    last = got[-1].config
    assert (last.train.weight_decay, last.model.seed, last.train.grokfast) == (1.0, 3, False)
    assert last.task == BASE.task and last.model.d_mlp == 64  # the rest is the base's


def test_log_values_are_log_spaced_with_both_ends():
    with pytest.raises(GridError, match="the value 1 is given twice"):
        axis("seed=log:1:3:4")  # rounded to 1, 1, 2, 3 would repeat a member
    lr = axis("lr=log:1e-3:1:7").values
    assert len(lr) == 7 and lr[0] == 1e-3 and lr[-1] == 1.0
    ratios = [b / a for a, b in zip(lr, lr[1:])]
    assert all(math.isclose(r, math.sqrt(10), rel_tol=1e-9) for r in ratios)
    assert axis("lr=log:0.5:0.5:1").values == (0.5,)
    # an integer flag rounds; log values and plain ones mix on one axis
    assert axis("d-mlp=log:16:256:5").values == (16, 32, 64, 128, 256)
    assert axis("weight-decay=0,log:0.1:10:3").values == (0.0, 0.1, 1.0, 10.0)


def test_toml_sweep_table_lists_strings_and_numbers():
    table = {"weight-decay": [0.1, 1], "lr": "log:1e-3:1e-2:2", "seed": 5, "grokfast": [True, False],
             "frac_train": "0.3,0.5"}
    axes = parse_sweep_table(table, FLAGS, "sweep.toml")
    assert [(a.flag, a.values) for a in axes] == [
        ("weight-decay", (0.1, 1.0)), ("lr", (1e-3, 1e-2)), ("seed", (5,)),
        ("grokfast", (True, False)), ("frac-train", (0.3, 0.5))]


@pytest.mark.parametrize("text, needle", [
    ("wd=1,2", "'wd' is not a train flag"),
    ("run-id=a,b", "'run-id' is not a train flag"),
    ("device=cpu", "device cannot be a grid axis"),
    ("weight-decay", "is not FLAG=V1,V2"),
    ("weight-decay=", "the axis is empty"),
    ("weight-decay=0.1,,1", "an empty value is not allowed"),
    ("weight-decay=heavy", "'heavy' is not a number"),
    ("seed=1.5", "'1.5' is not an integer"),
    ("grokfast=maybe", "'maybe' is not on/off"),
    ("seed=1,1", "the value 1 is given twice"),
    ("lr=log:1e-3:1", "is not log:START:STOP:N"),
    ("lr=log:0:1:3", "START and STOP > 0"),
    ("lr=log:1e-3:1:x", "an integer N"),
    ("lr=log:1e-3:1:0", "the axis is empty"),
    ("task=log:1:2:3", "log: values need a numeric flag"),
])
def test_bad_axis_is_one_line_naming_it(text, needle):
    with pytest.raises(GridError) as err:
        axis(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, needle", [
    ("frac-train=0.5,1", "--grid member frac-train=1.0: frac_train=1.0 is out of range"),
    ("task=mod_add,mod_pow", "task='mod_pow' is not allowed"),
    ("p=7,1001", "p=1001 is out of range"),
    ("lr=0.1,0", "lr=0.0 is out of range"),
])
def test_a_member_the_config_refuses_names_the_member(text, needle):
    with pytest.raises(GridError) as err:
        members(BASE, [axis(text)], FLAGS)
    assert needle in str(err.value)


def test_axes_clash_and_no_axis():
    with pytest.raises(GridError, match="seed is given twice"):
        check_axes([axis("seed=1,2"), axis("seed=3")])
    with pytest.raises(GridError, match="--grid seed and --seed both set seed"):
        check_axes([axis("seed=1,2")], fixed=["seed"])
    with pytest.raises(GridError, match="needs at least one --grid"):
        members(BASE, [], FLAGS)


def test_more_than_ten_thousand_members_needs_yes():
    axes = [axis("weight-decay=log:1e-3:1:101"), axis("lr=log:1e-4:1e-2:100")]
    assert grid_size(axes) == 10_100 > MAX_MEMBERS
    with pytest.raises(GridError, match=r"10100 members \(101 x 100\), more than 10000: give --yes"):
        members(BASE, axes, FLAGS)
    assert len(members(BASE, axes, FLAGS, allow_large=True)) == 10_100


def test_bad_toml_table():
    with pytest.raises(GridError, match=r"\[sweep\] is 'x', not a table"):
        parse_sweep_table("x", FLAGS, "s.toml")
    with pytest.raises(GridError, match=r"\[sweep\] weight-decay: .* is not a list"):
        parse_sweep_table({"weight-decay": {"a": 1}}, FLAGS, "s.toml")
    with pytest.raises(GridError, match="the axis is empty"):
        parse_sweep_table({"seed": []}, FLAGS, "s.toml")
