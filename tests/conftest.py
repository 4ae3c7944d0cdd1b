import os

import pytest

# Tests are CPU-only and tiny: one intra-op thread is faster than two fighting for 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors: one torch thread. On a shared, loaded CPU a thread pool turns a 2 ms
    forward pass into 100 ms of spinning (subprocesses get OMP_NUM_THREADS=1 above)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d
