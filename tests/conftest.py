import os

import pytest

# Tests are CPU-only and tiny: one intra-op thread is faster than two fighting for 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d
