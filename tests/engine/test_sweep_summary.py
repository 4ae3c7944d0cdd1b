"""grok_engine.sweep.summary: one row of figures per run, on the committed tiny sweep
(tests/data/sweeps, make_tiny_sweep.py) and on a run without any cache."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from grok_engine.store import RunStore
from grok_engine.studies.progress import cached_measures, progress_measures
from grok_engine.fourier_basis import n_frequencies
from grok_engine.sweep.summary import (RunProgress, _progress_figures, differing_flags, figures_table,
                                       format_key_frequencies, run_figures)

SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    dest = tmp_path_factory.mktemp("sweeps") / "runs"
    shutil.copytree(SWEEPS, dest)
    return RunStore(dest)


def test_member_row_has_its_grid_values_phase_and_progress_figures(sweep_store):
    run = sweep_store.open("tsw-010")
    fig = run_figures(run, compute=False)
    assert fig.sweep_id == "tsw"
    assert fig.values == {"lr": 0.01, "weight-decay": 4.0, "frac-train": 0.8}
    assert fig.status == "done" and fig.epochs_done == 400
    m = run.metrics()
    first = lambda acc: int(m.epoch[np.argmax(np.nan_to_num(acc) >= 0.99)])  # noqa: E731
    assert (fig.train_99, fig.test_99) == (first(m.train_acc), first(m.test_acc))
    assert fig.delay == fig.test_99 - fig.train_99 and fig.phase == "grokking"
    assert fig.test_acc == pytest.approx(float(m.test_acc[-1]))
    measures = cached_measures(run)
    assert fig.weight_norm == pytest.approx(measures["sum_sq_weights"][-1])
    assert fig.restricted_loss == pytest.approx(measures["restricted_loss"][-1])
    assert fig.excluded_loss == pytest.approx(measures["excluded_loss"][-1])
    keys = progress_measures(run, save_cache=False).scalars["key_frequencies"]
    assert fig.key_frequencies == keys and 0 < len(keys) < n_frequencies(run.config.task.p)


def test_confused_member(sweep_store):
    fig = run_figures(sweep_store.open("tsw-000"), compute=False)
    assert fig.phase == "confusion" and fig.train_99 is None and fig.delay is None


def test_run_without_cache_computes_or_leaves_figures_blank(tmp_path, tiny_factory):
    run = tiny_factory.trained_run(tmp_path, "plain", epochs=20, checkpoint_every=10)
    blank = run_figures(run, compute=False)
    assert blank.sweep_id is None and blank.values == {}
    assert math.isnan(blank.weight_norm) and blank.key_frequencies is None
    assert cached_measures(run) is None  # compute=False computed nothing
    fig = run_figures(run)
    assert fig.weight_norm == pytest.approx(cached_measures(run)["sum_sq_weights"][-1])
    assert fig.key_frequencies is not None  # mod_add: cyclic (a list: [] when none stands out)


def test_key_frequencies_none_when_none_stands_out():
    """The progress measures restrict to every frequency when none stands out; the
    figures say none (not "1 2 3"), so a memorising run does not read as using them all."""
    class Run:  # what _progress_figures reads of a run
        class config:
            class task:
                task, p = "mod_add", 7

    measures = {"sum_sq_weights": np.array([2.0]), "restricted_loss": np.array([1.0]),
                "excluded_loss": np.array([3.0])}
    every = _progress_figures(Run, RunProgress(measures, [1, 2, 3]))
    found = _progress_figures(Run, RunProgress(measures, [2]))
    assert every["key_frequencies"] == [] and found["key_frequencies"] == [2]
    assert every["restricted_loss"] == 1.0  # still the measure, over every frequency
    assert [format_key_frequencies(k) for k in ([], None, [2, 3])] == ["none", "-", "2 3"]


def test_non_cyclic_task_has_no_key_frequencies(tmp_path, tiny_factory):
    run = tiny_factory.trained_run(tmp_path, "adder", task="add", epochs=10, checkpoint_every=10)
    fig = run_figures(run)
    assert fig.key_frequencies is None and math.isnan(fig.restricted_loss)
    assert np.isfinite(fig.weight_norm)


def test_unstarted_and_unreadable_runs(tmp_path, tiny_factory):
    store = RunStore(tmp_path)
    run = store.create(tiny_factory.config("mod_add", 7), run_id="fresh")
    assert run_figures(run).status == "not started"
    trained = tiny_factory.trained_run(tmp_path, "broken", epochs=10, checkpoint_every=10)
    (trained.path / "metrics.safetensors").write_bytes(b"not a safetensors file")
    fig = run_figures(trained)
    assert fig.status == "unreadable" and "metrics" in fig.error


def test_table_and_differing_flags(sweep_store):
    figs = [run_figures(sweep_store.open(i), compute=False) for i in ("tsw-006", "tsw-010", "tsw-011")]
    assert differing_flags(figs) == ["frac-train", "weight-decay"]
    table = figures_table(figs, ["weight-decay", "frac-train"])
    assert table.column_names[:3] == ["run", "weight-decay", "frac-train"]
    assert table.columns["phase"] == ["memorisation", "grokking", "memorisation"]
    assert table.columns["key_frequencies"][1] == " ".join(map(str, figs[1].key_frequencies))
