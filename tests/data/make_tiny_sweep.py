"""Writes tests/data/sweeps/: a runs folder holding the sweep ``tsw`` (sweep.json, the
sweep contract of COMMON.md) and its 12 member runs ``tsw-000`` .. ``tsw-011``, which the
sweep screen, compare screen and ``grok-tui sweep show`` tests read.

    .venv/bin/python tests/data/make_tiny_sweep.py

Grid: lr {1e-4, 1e-2} x weight-decay {0.1, 4.0} x frac-train {0.5, 0.8, 0.9} on mod_add
p=11 (1 layer, 2 heads, d_model 32, d_mlp 64), 400 epochs, a checkpoint every 200 (and the
trainer's dense ones). lr 1e-4 never fits the train set (confusion); lr 1e-2 with weight
decay 0.1 memorises; weight decay 4 with frac 0.8 groks. Each member is trained alone by
the project's trainer and committed, not trained at test time, for the reason given in
make_tiny_run.py (BLAS noise moves what the screens show). The progress study's cache of
each member is kept (analysis/), so the screens show the restricted loss without
computing it. Rerun after a change of the run format, then update the snapshots.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREATED = "2026-01-01T00:00:00"
SWEEP_ID = "tsw"
AXES = [{"flag": "lr", "values": [1e-4, 1e-2]}, {"flag": "weight-decay", "values": [0.1, 4.0]},
        {"flag": "frac-train", "values": [0.5, 0.8, 0.9]}]
BASE = dict(task="mod_add", p=11, n_layers=1, n_heads=2, d_model=32, d_head=16, d_mlp=64,
            epochs=400, checkpoint_every=200, device="cpu")


def write_sweep(runs_dir: Path, sweep_id: str, axes: list[dict], base: dict, train: bool = True) -> list:
    """The sweep ``sweep_id`` in ``runs_dir`` as the contract lays it out: every member of
    the cross product of ``axes`` created by RunStore.create (config.json then marked
    ``"source": "sweep"`` with its ``"sweep"`` field) and, if ``train``, trained to the end;
    sweep.json last. Returns the member runs."""
    import torch

    from grok_engine.config import RunConfig
    from grok_engine.store import Run, RunStore

    torch.manual_seed(0)
    store = RunStore(runs_dir)
    flags = [a["flag"] for a in axes]
    members, runs = [], []
    for index, combo in enumerate(itertools.product(*(a["values"] for a in axes))):
        values = dict(zip(flags, combo))
        run_id = f"{sweep_id}-{index:03d}"
        config = RunConfig().replace(**{**base, **{f.replace("-", "_"): v for f, v in values.items()}})
        run = store.create(config, run_id=run_id, source="sweep")
        raw = json.loads((run.path / "config.json").read_text())
        raw = {"id": run_id, "created": CREATED, "source": "sweep",
               "sweep": {"id": sweep_id, "values": values}, **{k: raw[k] for k in ("task", "model", "train")}}
        (run.path / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
        run = Run(run.path)
        if train:
            run.trainer().run(callback=run)
        members.append({"run_id": run_id, "values": values})
        runs.append(run)
    (runs_dir / sweep_id).mkdir(parents=True, exist_ok=True)
    base_config = RunConfig().replace(**base).to_dict()
    (runs_dir / sweep_id / "sweep.json").write_text(json.dumps(
        {"id": sweep_id, "kind": "sweep", "created": CREATED, "base": base_config, "axes": axes,
         "members": members, "executor": "local"}, indent=2) + "\n")
    return runs


def main() -> None:
    import torch

    from grok_engine.studies.progress import progress_measures

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = write_sweep(Path(tmp), SWEEP_ID, AXES, BASE)
        for run in runs:
            progress_measures(run)  # its cache, beside the run
        for run in runs:  # the optimiser state: only resuming needs it
            shutil.rmtree(run.path / "resume", ignore_errors=True)
        dest = HERE / "sweeps"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(tmp, dest)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
