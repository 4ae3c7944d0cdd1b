"""AsyncWriter: checkpoints reach the disk in order, and a write failure surfaces."""

import pytest

from grok_engine.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from grok_engine.errors import GrokError
from grok_engine.store import AsyncWriter, RunStore
from grok_engine.train import pick_device

TINY = RunConfig(task=TaskConfig(task="mod_add", p=7, frac_train=0.5),
                 model=ModelConfig(d_model=16, d_mlp=32, n_heads=2, d_head=8),
                 train=TrainConfig(epochs=40, checkpoint_every=10))


def test_async_writer_persists_every_checkpoint_in_order(runs_dir):
    run = RunStore(runs_dir).create(TINY, run_id="w")
    trainer = run.trainer()
    with AsyncWriter(run) as writer:
        trainer.run(callback=writer)
    assert run.checkpoint_epochs() == [0, 10, 20, 30, 40]
    assert run.resume_epochs() == [40]
    assert len(run.metrics()) == 40
    final = run.load_checkpoint(40)
    for name, value in trainer.weights().items():
        assert (final[name] == value).all(), name


def test_async_writer_reports_a_write_failure(runs_dir):
    run = RunStore(runs_dir).create(TINY, run_id="w")
    (run.path / "checkpoints").write_text("a file where a folder must be")
    writer = AsyncWriter(run)
    with pytest.raises(GrokError, match="cannot write run w"):
        run.trainer().run(callback=writer)
        writer.close()


def test_absent_device_is_refused_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GrokError, match="device='cuda' is not available"):
        pick_device("cuda")
