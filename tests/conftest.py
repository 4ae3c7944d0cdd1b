import os

import pytest

# Tests are CPU-only and small; keep torch from spreading over cores it shares with pytest.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d
