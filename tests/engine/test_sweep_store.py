"""Sweeps on disk (the sweep contract): sweep.json, members as ordinary runs carrying the
sweep's id and their grid values, one namespace with runs, statuses read from the runs,
members a SIGKILL kept from being created; and the executor's packs."""

from __future__ import annotations

import json

import pytest

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.store import RunStore
from grok_engine.sweep.executor import make_packs, pending_members, train_pack_solo
from grok_engine.sweep.grid import members, parse_grid_arg
from grok_engine.sweep.store import SWEEP_FILE, SweepStore, load_sweep
from grok_tui.sweep_cmd import flag_table

FLAGS = flag_table()
BASE = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, d_model=32, n_heads=2,
                           d_head=16, d_mlp=64, epochs=20, checkpoint_every=10, device="cpu")


def make_sweep(root, *grid: str, sweep_id: str = "sw", base: RunConfig = BASE):
    axes = [parse_grid_arg(g, FLAGS) for g in grid]
    return SweepStore(root).create(base, axes, members(base, axes, FLAGS), sweep_id=sweep_id)


def test_sweep_json_and_member_configs_follow_the_contract(runs_dir):
    sweep = make_sweep(runs_dir, "weight-decay=0.1,1", "seed=1,2")
    raw = json.loads((runs_dir / "sw" / SWEEP_FILE).read_text())
    assert raw["id"] == "sw" and raw["kind"] == "sweep" and raw["executor"] == "local"
    assert raw["base"] == BASE.to_dict()
    assert raw["axes"] == [{"flag": "weight-decay", "values": [0.1, 1.0]}, {"flag": "seed", "values": [1, 2]}]
    assert raw["members"][1] == {"run_id": "sw-001", "values": {"weight-decay": 0.1, "seed": 2}}
    assert not (runs_dir / "sw" / "config.json").exists()
    member = json.loads((runs_dir / "sw-002" / "config.json").read_text())
    assert member["source"] == "sweep" and member["id"] == "sw-002"
    assert member["sweep"] == {"id": "sw", "values": {"weight-decay": 1.0, "seed": 1}}
    run = RunStore(runs_dir).open("sw-002")  # an ordinary run
    assert run.config.train.weight_decay == 1.0 and run.config.model.seed == 1
    assert run.summary().sweep == "sw"
    assert sweep.member_config(2) == run.config
    assert not list(runs_dir.rglob(".tmp-*"))


def test_one_namespace_with_runs(runs_dir, tiny_factory):
    make_sweep(runs_dir, "seed=1,2")
    store = SweepStore(runs_dir)
    assert store.sweep_ids() == ["sw"]
    assert store.runs.run_ids() == ["sw-000", "sw-001"]  # the sweep folder is not a run
    with pytest.raises(GrokError, match="sweep id 'sw' is taken: a sweep 'sw' exists"):
        make_sweep(runs_dir, "seed=3")
    with pytest.raises(GrokError, match="already exists"):
        store.runs.create(BASE, run_id="sw")  # a run cannot take a sweep's id
    tiny_factory.trained_run(runs_dir, "solo-001", epochs=2)
    with pytest.raises(GrokError, match="sweep id 'solo' is taken: a run 'solo-001' exists"):
        make_sweep(runs_dir, "seed=1,2", sweep_id="solo")
    assert not (runs_dir / "solo").exists()
    with pytest.raises(GrokError, match="sweep id 'a/b': run id 'a/b' is not allowed"):
        make_sweep(runs_dir, "seed=1", sweep_id="a/b")


def test_status_is_read_from_each_run(runs_dir):
    sweep = make_sweep(runs_dir, "seed=1,2,3,4")
    store = SweepStore(runs_dir)
    assert store.statuses(sweep) == ["not started"] * 4
    runs = RunStore(runs_dir)
    states = train_pack_solo(runs_dir, ["sw-000"])
    assert states == {"sw-000": "done"}
    partial = runs.open("sw-001")
    partial.trainer().run(callback=partial, until_epoch=10)
    (runs_dir / "sw-002" / "diverged.json").write_text(json.dumps({"epoch": 3, "reason": "test"}))
    (runs_dir / "sw-003" / "config.json").write_text("{not json")
    assert store.statuses(sweep) == ["done", "partial", "diverged", "unreadable"]
    assert pending_members(store, sweep) == ["sw-001", "sw-003"]
    assert "sw" not in json.loads((runs_dir / "sw" / SWEEP_FILE).read_text())["members"][0]


def test_members_a_kill_kept_from_being_created_are_made_on_resume(runs_dir):
    sweep = make_sweep(runs_dir, "seed=1,2,3")
    store = SweepStore(runs_dir)
    import shutil

    shutil.rmtree(runs_dir / "sw-001")  # never created
    (runs_dir / "sw-002" / "config.json").unlink()  # killed inside RunStore.create
    assert store.ensure_members(store.open("sw")) == ["sw-001", "sw-002"]
    assert store.runs.open("sw-002").config == sweep.member_config(2)
    assert store.ensure_members(store.open("sw")) == []


@pytest.mark.parametrize("content, needle", [
    ("{", "is not valid JSON"),
    ('{"kind": "run"}', "is not a sweep"),
    ('{"kind": "sweep", "id": "x"}', "it lacks created, base, axes, members, executor"),
    ('{"kind": "sweep", "id": "x", "created": "", "base": {}, "axes": [], "executor": "local", '
     '"members": [{"run_id": 3}]}', "members is not a list of {run_id, values}"),
    ('{"kind": "sweep", "id": "x", "created": "", "base": {}, "axes": [], "executor": "local", '
     '"members": [{"run_id": "x-000", "values": {"p": 1}}]}', "is corrupt: p=1 is out of range"),
])
def test_a_bad_sweep_json_is_named(runs_dir, content, needle):
    (runs_dir / "x").mkdir()
    (runs_dir / "x" / SWEEP_FILE).write_text(content)
    with pytest.raises(GrokError, match=None) as err:
        load_sweep(runs_dir / "x" / SWEEP_FILE)
    assert needle in str(err.value) and str(runs_dir / "x" / SWEEP_FILE) in str(err.value)
    with pytest.raises(GrokError, match="sweep 'nope' does not exist .* have x"):
        SweepStore(runs_dir).open("nope")


def test_packs_group_by_shape_and_split_evenly_over_workers(runs_dir):
    sweep = make_sweep(runs_dir, "d-mlp=32,64", "seed=1,2,3,4,5")
    packs = make_packs(sweep, sweep.run_ids, "cpu", workers=2, limit=lambda c, d, n: 64)
    assert [p.run_ids for p in packs] == [("sw-000", "sw-001", "sw-002"), ("sw-003", "sw-004"),
                                          ("sw-005", "sw-006", "sw-007"), ("sw-008", "sw-009")]
    assert len({p.shape for p in packs[:2]}) == 1 and packs[0].shape != packs[2].shape
    small = make_packs(sweep, sweep.run_ids[:5], "cpu", workers=1, limit=lambda c, d, n: 2)
    assert [len(p.run_ids) for p in small] == [2, 2, 1]
