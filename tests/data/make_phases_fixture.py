"""Writes the fixtures of tests/engine/test_studies_curves.py: the metrics and progress
measures of two real runs of mod_add p=23 (frac 0.5; 1 layer, 4 heads, d_model 64,
d_mlp 256) made with the project's trainer and progress study:

- ``phases_mod_add_p23_slow.npz``: AdamW lr 3e-3, weight decay 1, 8000 epochs, test
  metrics every epoch: the regime of Nanda et al. (a memorisation plateau, a long circuit
  formation, then cleanup; test accuracy >= 99% at epoch 4464);
- ``phases_mod_add_p23_fast.npz``: ``--preset fast``'s optimiser (Grokfast, lr 1e-2,
  weight decay 4, test metrics every 10 epochs), 500 epochs (>= 99% at epoch 350).

Both checkpoint every 100 epochs (and densely where the test metrics move), on the CPU's
numpy path: the numbers depend only on the config, up to BLAS rounding. Saved: the
metrics of every 4th epoch of the slow run (every epoch of the fast one), as float32 to
keep the files small, and the progress measures of every checkpoint (float64)::

    PYTHONPATH=. python tests/data/make_phases_fixture.py slow   # ~1 min on 2 cores
    PYTHONPATH=. python tests/data/make_phases_fixture.py fast   # ~20 s
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from grok_engine.config import RunConfig
from grok_engine.store import RunStore
from grok_engine.studies.progress import progress_measures

MODEL = dict(task="mod_add", p=23, frac_train=0.5, n_heads=4, d_model=64, d_head=16, d_mlp=256,
             checkpoint_every=100, device="cpu")
RUNS = {
    "slow": (dict(MODEL, lr=3e-3, weight_decay=1.0, epochs=8000, eval_every=1), 4),
    "fast": (dict(MODEL, lr=1e-2, weight_decay=4.0, grokfast=True, grokfast_alpha=0.98, grokfast_lamb=2.0,
                  epochs=500, eval_every=10), 1),
}


def fixture_path(kind: str) -> Path:
    return Path(__file__).with_name(f"phases_mod_add_p23_{kind}.npz")


def main(kind: str) -> None:
    config, every = RUNS[kind]
    with tempfile.TemporaryDirectory() as root:
        run = RunStore(root).create(RunConfig().replace(**config), run_id=kind)
        run.trainer().run(callback=run)
        measures = progress_measures(run).tables["measures"].columns
        metrics = run.metrics()
    rows = (metrics.epoch % every) == 0
    np.savez_compressed(
        fixture_path(kind), config=np.array(repr(config)),
        **{f"curves_{k}": (v[rows] if k == "epoch" else v[rows].astype(np.float32))
           for k, v in metrics.as_dict().items()},
        **{f"progress_{k}": np.asarray(v) for k, v in measures.items()})


if __name__ == "__main__":
    for kind in sys.argv[1:] or list(RUNS):
        main(kind)
