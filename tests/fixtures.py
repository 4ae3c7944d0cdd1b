"""What the tests share: the tiny model's config, tiny runs on disk, and ``settle`` for the
app's Pilot tests. Imported as ``tests.fixtures`` (pyproject's pytest ``pythonpath``).

The tiny model: 1 layer, 2 heads of 16, d_model 32, d_mlp 64, on the CPU. Each test file
picks its task, p and epochs through :func:`tiny_config`'s flat field names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from grok_engine.config import RunConfig

TINY_MODEL = dict(n_layers=1, n_heads=2, d_model=32, d_head=16, d_mlp=64)
TINY_RUN = Path(__file__).resolve().parent / "data" / "runs" / "tiny"  # make_tiny_run.py
# The committed run (tests/data/runs/tiny): add p=7, 200 epochs, a checkpoint every 50.
TINY_RUN_FIELDS = dict(task="add", p=7, epochs=200, checkpoint_every=50)
# A run of 6 epochs, a checkpoint every 3 (train_tiny_run's mod_add p=7): studies at 3 points.
EXPORT_RUN = dict(frac_train=0.6, epochs=6, checkpoint_every=3)


def tiny_config(**fields) -> RunConfig:
    """The tiny model on the CPU, with ``fields`` (flat RunConfig names: task, p,
    frac_train, epochs, checkpoint_every, seed, ...) over RunConfig's defaults."""
    return RunConfig().replace(**{**TINY_MODEL, "device": "cpu", **fields})


def train_tiny_run(root, run_id: str, **fields):
    """A run of the tiny model (default mod_add p=7, frac 0.5) created in ``root`` (a
    RunStore folder) and trained to its config's end; ``fields`` as in tiny_config."""
    from grok_engine.store import RunStore

    config = tiny_config(**{"task": "mod_add", "p": 7, "frac_train": 0.5, **fields})
    run = RunStore(root).create(config, run_id=run_id)
    run.trainer().run(callback=run)
    return run


def make_tiny_run(runs_dir: Path, run_id: str = "tiny", train: bool = True, **overrides):
    """RunStore(runs_dir).create(the committed run's config) and, if ``train``, all 200
    epochs (checkpoints 0, 50, 100, 150, 200 and the dense ones where test accuracy moves:
    110, 120). Deterministic: the config fixes every seed."""
    import torch

    from grok_engine.store import RunStore

    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny ops: OpenMP threads only contend on a shared 2-core box
    run = RunStore(runs_dir).create(tiny_config(**{**TINY_RUN_FIELDS, **overrides}), run_id=run_id)
    if train:
        run.trainer().run(callback=run)
    return run


def copy_tiny_run(runs_dir: Path, run_id: str = "tiny") -> Path:
    """The committed tiny run (tests/data/runs/tiny, made by make_tiny_run) copied to
    ``runs_dir/run_id``: the same weights on every CPU, so what the app shows does not
    depend on the BLAS kernel that trained it (see tests/data/make_tiny_run.py)."""
    dest = Path(runs_dir) / run_id
    shutil.copytree(TINY_RUN, dest)
    if run_id != "tiny":
        config = json.loads((dest / "config.json").read_text())
        config["id"] = run_id
        (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


async def settle(app, pilot) -> None:
    """Until no worker runs and the messages they posted are handled (a chain: engine ->
    run screen -> run read -> study computed)."""
    from textual.worker import WorkerCancelled

    quiet = 0
    for _ in range(200):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one
            pass
        await pilot.pause()
        if all(w.is_finished for w in app.workers):
            quiet += 1
            if quiet >= 3:
                return
        else:
            quiet = 0
    raise AssertionError("workers never settled")
