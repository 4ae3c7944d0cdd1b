"""Writes tests/data/runs/p113: a grokked p=113 ``mod_add`` model for the end-to-end test.

    .venv/bin/python tests/data/make_p113_run.py      # about a minute on 2 cores

Trained by the project's own trainer with ``grok-tui train --task mod_add --p 113
--frac-train 0.3 --preset fast --epochs 600`` settings; only the last checkpoint (epoch
600, 0.9 MB) and the metrics are kept, with no resume state: the run is for looking at,
not for training further. At epoch 600 its neurons form four clusters of 100+ neurons
(key frequencies 7, 9, 24, 36: 116, 144, 123 and 119 neurons when it was made), the
3-digit counts the tmux test reads off the Fourier pane. Committed rather than trained at
test time for the reason tests/data/make_tiny_run.py gives (the weights depend on the
CPU's kernels), and because a minute of training is too long for the suite.
"""

from __future__ import annotations

import shutil
import tempfile

from make_tiny_run import commit_run  # this folder: sys.path[0] when run as a script

EPOCHS = 600


def main() -> None:
    from grok_engine.config import RunConfig, apply_preset
    from grok_engine.store import RunStore

    config = apply_preset(RunConfig(), "fast").replace(task="mod_add", p=113, frac_train=0.3,
                                                      epochs=EPOCHS)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunStore(tmp).create(config, run_id="p113")
        run.trainer().run(callback=run)
        for path in run.checkpoint_dir.iterdir():
            if path.name != f"epoch_{EPOCHS:06d}.safetensors":
                path.unlink()
        shutil.rmtree(run.path / "resume")
        commit_run(run.path, "p113")


if __name__ == "__main__":
    main()
