"""The Ray executor: a local Ray of 2 CPUs trains a 4-member sweep in 2 packs; one worker
is SIGKILLed mid-pack; Ray runs the pack again, which resumes each member from its last
checkpoint; all 4 members end with the metrics and weights the local executor gives."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from grok_engine.config import RunConfig
from grok_engine.store import RunStore
from grok_engine.sweep.executor import execute
from grok_engine.sweep.grid import members, parse_grid_arg
from grok_engine.sweep.store import SweepStore
from grok_tui.sweep_cmd import flag_table

ray = pytest.importorskip("ray")

BASE = RunConfig().replace(task="mod_add", p=7, frac_train=0.5, d_model=32, n_heads=2, d_head=16,
                           d_mlp=64, epochs=600, checkpoint_every=50, device="cpu")
GRID = ("weight-decay=0.3,1", "seed=1,2")


def make_sweep(root):
    flags = flag_table()
    axes = [parse_grid_arg(g, flags) for g in GRID]
    return SweepStore(root).create(BASE, axes, members(BASE, axes, flags), sweep_id="ray")


def test_ray_sweep_survives_a_killed_worker_and_equals_the_local_executor(tmp_path):
    local_root, ray_root = tmp_path / "local", tmp_path / "ray"
    local = make_sweep(local_root)
    _packs, states = execute(SweepStore(local_root), local, "local", workers=2)
    assert set(states.values()) == {"done"}

    sweep = make_sweep(ray_root)
    workers: dict[tuple[str, ...], list[int]] = {}
    killed: list[tuple[int, str, int]] = []

    def on_worker(pid: int, run_ids: tuple[str, ...]) -> None:
        workers.setdefault(run_ids, []).append(pid)

    def on_progress(run_id: str, epoch: int, target: int) -> None:
        # the first member seen past epoch 100: its worker is killed, once
        if killed or not 100 <= epoch < target - 100:
            return
        pack = next(ids for ids in workers if run_id in ids)
        os.kill(workers[pack][-1], signal.SIGKILL)
        killed.append((workers[pack][-1], run_id, epoch))

    packs, states = execute(SweepStore(ray_root), sweep, "ray", num_cpus=2, on_worker=on_worker,
                            on_progress=on_progress)
    assert len(packs) == 2 and killed, (packs, killed)
    assert states == {rid: "done" for rid in sweep.run_ids}, states
    _pid, victim, epoch = killed[0]
    pack = next(ids for ids in workers if victim in ids)
    assert len(workers[pack]) == 2 and workers[pack][0] != workers[pack][1], workers  # retried
    assert SweepStore(ray_root).statuses(sweep) == ["done"] * 4

    for rid in sweep.run_ids:
        on_ray, on_local = RunStore(ray_root).open(rid), RunStore(local_root).open(rid)
        assert on_ray.checkpoint_epochs() == on_local.checkpoint_epochs(), rid
        for name, column in on_local.metrics().as_dict().items():
            np.testing.assert_allclose(on_ray.metrics().as_dict()[name], column, rtol=1e-5,
                                       err_msg=f"{rid} {name}")
        last = on_local.checkpoint_epochs()[-1]
        for name, w in on_local.load_checkpoint(last).items():
            np.testing.assert_allclose(on_ray.load_checkpoint(last)[name], w, rtol=1e-5, atol=1e-7)
