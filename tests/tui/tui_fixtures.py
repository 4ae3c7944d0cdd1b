"""A tiny deterministic run on disk, shared by the Pilot and snapshot tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY_RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "tiny"  # make_tiny_run.py
TINY = dict(task="add", p=7, d_model=32, d_mlp=64, n_heads=2, d_head=16, epochs=200,
            checkpoint_every=50, device="cpu")


def tiny_config(**overrides):
    from grok_engine.config import RunConfig

    return RunConfig().replace(**{**TINY, **overrides})


def make_tiny_run(runs_dir: Path, run_id: str = "tiny", train: bool = True, **overrides):
    """RunStore(runs_dir).create(tiny config) and, if ``train``, all 200 epochs (checkpoints
    0, 50, 100, 150, 200 and the dense ones where test accuracy moves: 110, 120).
    Deterministic: the config fixes every seed."""
    import torch

    from grok_engine.store import RunStore

    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny ops: OpenMP threads only contend on a shared 2-core box
    run = RunStore(runs_dir).create(tiny_config(**overrides), run_id=run_id)
    if train:
        run.trainer().run(callback=run)
    return run


def copy_tiny_run(runs_dir: Path, run_id: str = "tiny") -> Path:
    """The committed tiny run (tests/data/runs/tiny, made by make_tiny_run with the config
    above) copied to ``runs_dir/run_id``: the same weights on every CPU, so what the app
    shows does not depend on the BLAS kernel that trained it (see tests/data/make_tiny_run.py)."""
    dest = Path(runs_dir) / run_id
    shutil.copytree(TINY_RUN, dest)
    if run_id != "tiny":
        config = json.loads((dest / "config.json").read_text())
        config["id"] = run_id
        (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


from textual.worker import WorkerCancelled  # noqa: E402


async def settle(app, pilot) -> None:
    """Until no worker runs and the messages they posted are handled (a chain: engine ->
    run screen -> run read -> study computed)."""
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
