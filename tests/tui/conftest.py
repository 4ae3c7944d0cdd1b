"""Fixtures for the pane tests: real StudyResults of a tiny, deterministic model.

``tiny_run``: a saved run (modular addition, p=7; 1 layer, 2 heads, d_model 32, d_head 16,
d_mlp 64) trained for 6 epochs with a checkpoint every 3, so the progress study has
checkpoints to read. ``trained_dir``/``runs``: the app tests' run folder (tests.fixtures' tiny
run) and a private copy of it per test. ``study_results``: name -> StudyResult of every registered study at
the run's last checkpoint (the real studies, default options). Session-scoped: built once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grok_engine.config import RunConfig
from tests.fixtures import EXPORT_RUN, copy_tiny_run, tiny_config as shared_tiny_config, train_tiny_run

TINY_P = 7


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """A runs folder with ``tiny`` (tests.fixtures.copy_tiny_run: add p=7, 200 epochs, a
    checkpoint every 50, the committed run), for the app tests."""
    runs = tmp_path_factory.mktemp("app_runs")
    copy_tiny_run(runs, "tiny")
    return runs


@pytest.fixture
def runs(trained_dir, tmp_path) -> Path:
    """A private copy of ``trained_dir`` (tests may train or write into it)."""
    dest = tmp_path / "runs"
    shutil.copytree(trained_dir, dest)
    return dest


@pytest.fixture
def anyio_backend():
    """Async Pilot tests run on asyncio (the anyio pytest plugin, `pytest.mark.anyio`)."""
    return "asyncio"


def tiny_config(task: str = "mod_add") -> RunConfig:
    return shared_tiny_config(task=task, p=TINY_P, **EXPORT_RUN)  # tiny_run's config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("runs"), "tiny", **EXPORT_RUN)


@pytest.fixture(scope="session")
def tiny_context(tiny_run):
    from grok_engine.context import context_for

    return context_for(tiny_run, tiny_run.checkpoint_epochs()[-1])


@pytest.fixture(scope="session")
def study_results(tiny_context):
    """name -> StudyResult for every study in the registry, at the last checkpoint."""
    from grok_engine.studies import STUDY_MODULES, run_study

    return {name: run_study(name, tiny_context) for name in STUDY_MODULES}


@pytest.fixture(scope="session")
def add_fourier_result():
    """The fourier study on integer addition (not periodic): only the embedding norms."""
    from grok_engine.context import context_from_weights
    from grok_engine.studies import run_study
    from grok_engine.weights import init_weights

    cfg = tiny_config("add")
    ctx = context_from_weights(cfg, init_weights(cfg.task, cfg.model))
    return run_study("fourier", ctx)
