"""The curves study and the grokking phases (grok_engine.studies.curves).

Three kinds of curves: synthetic ones shaped as in Nanda et al. (known phase bounds, then
noise, slingshots, truncation); the real curves and progress measures of two grokking
runs made with this project's trainer and progress study (tests/data, written by
tests/data/make_phases_fixture.py, whose docstring gives the command and configs); and a
tiny run trained here, for the study's plumbing (the progress cache, the fallback).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from grok_engine.errors import GrokError
from grok_engine.studies import run_study
from grok_engine.studies.curves import (PHASES, SOURCE_ACCURACY, SOURCE_PROGRESS, find_phases,
                                        phase_changes)

DATA = Path(__file__).resolve().parents[1] / "data"


def col(result, table: str, column: str) -> np.ndarray:
    return np.asarray(result.tables[table].columns[column])


# -- synthetic curves shaped like Nanda et al.'s -------------------------------------------
def nanda_run(n=3000, memorize=300, cliff=(1500, 1700), weight_cliff=(1550, 1800), eval_every=1,
              noise=0.0, seed=0, weight_falls=True):
    """(metrics, measures) of a run that fits its train set by epoch 100 and whose log10
    train loss falls from 0.5 to -6 by ``memorize``; log10 test loss rises to 1.2, stays
    high until ``cliff[0]``, falls to -5 by ``cliff[1]``; the weight norm (log10) falls from
    2.84 to 2.6 over ``weight_cliff``; restricted loss falls and excluded loss rises in
    between. Checkpoints every 50 epochs and every 10 from 1400 to 1900. ``noise``:
    Gaussian, in decades, on every log10 value."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(1, n + 1)

    def jitter(k):
        return noise * rng.standard_normal(k)

    train_log = np.interp(epoch, [1, memorize, 3000], [0.5, -6.0, -6.1]) + jitter(n)
    test_log = np.interp(epoch, [1, memorize, cliff[0], cliff[1], 3000], [0.5, 1.2, 1.15, -5.0, -5.2]) + jitter(n)
    train_acc = np.minimum(1.0, epoch / (memorize / 3))
    test_acc = np.interp(epoch, [1, cliff[0] - 100, cliff[0] + 100, 3000], [0.0, 0.1, 1.0, 1.0])
    off = epoch % eval_every != 0
    test_log[off] = np.nan
    test_acc[off] = np.nan
    ck = np.array(sorted(set(range(0, n + 1, 50)) | set(range(1400, min(n, 1900) + 1, 10))))
    w = [2.7, 2.9, 2.85, 2.84, 2.6, 2.6] if weight_falls else [2.7, 2.9, 2.9, 2.9, 2.9, 2.9]
    weight_log = np.interp(ck, [0, memorize, cliff[0], weight_cliff[0], weight_cliff[1], 3000], w) + jitter(len(ck))
    metrics = {"epoch": epoch, "train_loss": 10 ** train_log, "test_loss": 10 ** test_log,
               "train_acc": train_acc, "test_acc": test_acc}
    measures = {"epoch": ck, "sum_sq_weights": 10 ** weight_log,
                "restricted_loss": 10 ** np.interp(ck, [0, memorize, cliff[1], 3000], [0.5, 0.4, -5.3, -5.4]),
                "excluded_loss": 10 ** np.interp(ck, [0, memorize, cliff[0], 3000], [0.5, 0.3, 0.9, 0.5])}
    return metrics, measures


def test_phases_from_the_progress_measures_of_a_nanda_shaped_run():
    metrics, measures = nanda_run()
    phases = find_phases(metrics, measures)
    assert phases.source == SOURCE_PROGRESS
    # memorization: train loss within 10% of its 6.6-decade fall of its floor: log10 <= -5.4
    assert 265 <= phases.memorization_end <= 280
    assert 1490 <= phases.circuit_formation_end <= 1505  # the test loss's cliff starts at 1500
    assert 1790 <= phases.cleanup_end <= 1820  # the weight norm flattens at 1800, after the test loss
    assert phases.phase_at(1000) == "circuit_formation" and phases.phase_at(1600) == "cleanup"
    assert phases.phase_at(2500) == "generalized"
    changes = phase_changes(phases, metrics, measures)
    circuit = PHASES.index("circuit_formation")
    assert changes["restricted_loss"][circuit] < 0 < changes["excluded_loss"][circuit]
    assert changes["test_loss"][circuit] > -0.1  # test loss still high
    cleanup = PHASES.index("cleanup")
    assert changes["test_loss"][cleanup] < -5 and changes["sum_sq_weights"][cleanup] < -0.2


@pytest.mark.parametrize("noise,seed", [(0.005, 0), (0.005, 1), (0.02, 0), (0.02, 1), (0.02, 2)])
def test_phases_stand_noise(noise, seed):
    """Gaussian noise on every log10 value (0.02 decades: 5% on every loss, every epoch)."""
    phases = find_phases(*nanda_run(noise=noise, seed=seed))
    assert 265 <= phases.memorization_end <= 280
    assert 1490 <= phases.circuit_formation_end <= 1510
    assert 1770 <= phases.cleanup_end <= 1840


def test_a_slingshot_after_cleanup_changes_nothing():
    metrics, measures = nanda_run()
    clean = find_phases(metrics, measures)
    metrics["test_loss"][2500:2510] = 0.1  # test loss back up 4 decades for 10 epochs
    measures["sum_sq_weights"][measures["epoch"] == 2500] *= 2.0
    assert find_phases(metrics, measures) == clean


def test_phases_of_a_run_in_progress():
    assert find_phases(*nanda_run(n=1750)).as_dict() == {  # weight norm still falling at the end
        "memorization_end": 272, "circuit_formation_end": 1499, "cleanup_end": None}
    early = find_phases(*nanda_run(n=1400))  # before the cliff: circuit formation goes on
    assert early.circuit_formation_end is None and early.cleanup_end is None
    assert 265 <= early.memorization_end <= 280 and early.phase_at(1400) == "circuit_formation"
    metrics, measures = nanda_run()
    metrics["train_acc"] = np.full(3000, 0.5)  # never fits its train set
    assert find_phases(metrics, measures).as_dict() == dict.fromkeys(
        ("memorization_end", "circuit_formation_end", "cleanup_end"))


def test_a_weight_norm_that_does_not_fall_leaves_the_end_to_the_test_loss():
    phases = find_phases(*nanda_run(weight_falls=False))
    assert 1695 <= phases.cleanup_end <= 1710


def test_unevaluated_epochs_and_irregular_checkpoints_are_read_as_they_come():
    phases = find_phases(*nanda_run(eval_every=10))
    assert 265 <= phases.memorization_end <= 280
    assert phases.circuit_formation_end % 10 == 0 and 1480 <= phases.circuit_formation_end <= 1510
    assert 1790 <= phases.cleanup_end <= 1820


# -- real runs (tests/data/make_phases_fixture.py) -------------------------------------------
def fixture(kind: str) -> tuple[dict, dict]:
    data = np.load(DATA / f"phases_mod_add_p23_{kind}.npz")
    metrics = {k.removeprefix("curves_"): data[k].astype(np.float64) if k != "curves_epoch" else data[k]
               for k in data.files if k.startswith("curves_")}
    measures = {k.removeprefix("progress_"): data[k] for k in data.files if k.startswith("progress_")}
    return metrics, measures


def grokked_at(metrics) -> int:
    return int(metrics["epoch"][np.nan_to_num(metrics["test_acc"]) >= 0.99][0])


@pytest.mark.parametrize("kind,expected", [
    ("slow", (1120, 4428, 4580)),  # lr 3e-3, wd 1: 99% test accuracy at epoch 4464
    ("fast", (180, 240, 430)),     # --preset fast's optimiser: 99% at epoch 350
])
def test_phases_of_real_grokking_runs(kind, expected):
    """The issue's complaint: circuit formation ended at test accuracy >= 99%, where Nanda
    et al. put that jump inside cleanup. From the progress measures it is inside cleanup,
    circuit formation shows its signature, and cleanup ends after the jump."""
    metrics, measures = fixture(kind)
    phases = find_phases(metrics, measures)
    assert (phases.memorization_end, phases.circuit_formation_end, phases.cleanup_end) == expected
    assert phases.circuit_formation_end < grokked_at(metrics) <= phases.cleanup_end
    changes = phase_changes(phases, metrics, measures)
    circuit, cleanup = PHASES.index("circuit_formation"), PHASES.index("cleanup")
    assert changes["restricted_loss"][circuit] < -0.3 and changes["excluded_loss"][circuit] > 0
    assert changes["test_loss"][cleanup] < -2 and changes["sum_sq_weights"][cleanup] < 0
    # memorization ends with the train set fitted and most of the train loss's fall behind
    assert metrics["train_acc"][metrics["epoch"] == phases.memorization_end][0] >= 0.99
    train = np.log10(metrics["train_loss"])
    at_end = train[metrics["epoch"] <= phases.memorization_end][-1]
    before_cleanup = train[metrics["epoch"] <= phases.circuit_formation_end].min()
    assert at_end - before_cleanup <= 0.1 * (train[0] - before_cleanup) + 0.1


def test_the_accuracy_fallback_on_a_real_run_ends_circuit_formation_before_the_jump():
    metrics, _ = fixture("slow")
    phases = find_phases(metrics)
    assert phases.source == SOURCE_ACCURACY
    assert phases.memorization_end == 60  # train accuracy 99%
    assert phases.circuit_formation_end < grokked_at(metrics) <= phases.cleanup_end


# -- the accuracy fallback on synthetic curves -----------------------------------------------
def grok_curves(n=1000, eval_every=1, grok=600, settle=700, memorize=50):
    """Synthetic run: train acc 1 from ``memorize``, test acc 0.5 then 1 from ``grok``, test
    loss falling 6 decades from grok to ``settle`` then flat; test NaN off the eval epochs."""
    epoch = np.arange(1, n + 1)
    train_acc = np.where(epoch >= memorize, 1.0, epoch / memorize * 0.9)
    test_acc = np.where(epoch >= grok, 1.0, 0.5)
    log_loss = np.where(epoch < grok, 0.5, np.interp(epoch, [grok, settle], [-1.0, -7.0]))
    test_loss = 10.0 ** log_loss
    off = (epoch % eval_every) != 0
    test_acc[off] = np.nan
    test_loss[off] = np.nan
    return {"epoch": epoch, "train_acc": train_acc, "test_acc": test_acc, "test_loss": test_loss,
            "train_loss": 10.0 ** -np.minimum(epoch / 10, 8)}


def test_accuracy_fallback_on_a_grokking_run():
    phases = find_phases(grok_curves())
    assert phases.source == SOURCE_ACCURACY and phases.memorization_end == 50
    assert phases.circuit_formation_end == 600  # test accuracy 10% of the way from 0.5 to 1
    # 6 decades in 100 epochs: within 0.5 decade of the floor from epoch 700 - 0.5*100/6
    assert phases.cleanup_end == 692
    assert phases.phase_at(10) == "memorization" and phases.phase_at(300) == "circuit_formation"
    assert phases.phase_at(650) == "cleanup" and phases.phase_at(900) == "generalized"


def test_accuracy_fallback_skips_unevaluated_epochs_and_needs_the_plateau():
    phases = find_phases(grok_curves(eval_every=10, grok=605))
    assert (phases.memorization_end, phases.circuit_formation_end, phases.cleanup_end) == (50, 610, 700)
    assert find_phases(grok_curves(n=700)).cleanup_end is None  # still falling fast at the end
    m = grok_curves()
    m["test_loss"][850:860] = 3.0  # a slingshot after the plateau
    assert find_phases(m).cleanup_end == 692


def test_accuracy_fallback_when_the_run_never_groks():
    m = grok_curves(grok=10_000)
    assert find_phases(m).as_dict() == {"memorization_end": 50, "circuit_formation_end": None,
                                        "cleanup_end": None}
    m["train_acc"] = np.full(1000, 0.5)
    assert find_phases(m).as_dict() == dict.fromkeys(("memorization_end", "circuit_formation_end",
                                                      "cleanup_end"))
    empty = {k: np.zeros(0) for k in ("epoch", "train_loss", "train_acc", "test_acc", "test_loss")}
    assert find_phases(empty).cleanup_end is None
    assert find_phases(empty, {"epoch": np.zeros(0), "sum_sq_weights": np.zeros(0)}).cleanup_end is None


def test_phases_spans_chain_each_phase_to_the_one_before():
    phases = find_phases(grok_curves())
    assert phases.spans() == [("memorization", 0, 50), ("circuit_formation", 50, 600), ("cleanup", 600, 692)]
    phases = find_phases(grok_curves(grok=10_000))
    assert phases.spans() == [("memorization", 0, 50), ("circuit_formation", 50, None), ("cleanup", None, None)]


# -- the study ------------------------------------------------------------------------------
def test_curves_without_a_run(tiny_ctx_add):
    result = run_study("curves", tiny_ctx_add)
    assert result.tables["curves"].column_names == ["epoch", "train_loss", "test_loss", "train_acc", "test_acc"]
    assert result.tables["curves"].n_rows == 0
    phases = result.tables["phases"]
    assert phases.column_names == ["phase", "start_epoch", "end_epoch", "definition", "source",
                                   "test_loss_decades", "restricted_loss_decades",
                                   "excluded_loss_decades", "sum_sq_weights_decades"]
    assert list(phases.columns["phase"]) == list(PHASES)
    assert list(phases.columns["end_epoch"]) == [None, None, None]
    assert all(phases.columns["definition"])
    assert result.scalars["circuit_formation_end"] is None
    assert result.scalars["phases_source"] == SOURCE_ACCURACY
    assert math.isnan(result.scalars["test_acc_at_epoch"])


@pytest.fixture(scope="module")
def moving_run(tmp_path_factory, one_thread):
    """A tiny mod_add run whose test metrics move (dense checkpoints) and fits its train
    split: lr 1e-2, 150 epochs, a checkpoint every 50."""
    from grok_engine.config import RunConfig
    from grok_engine.store import RunStore

    cfg = RunConfig().replace(task="mod_add", p=11, frac_train=0.5, n_heads=2, d_model=32, d_head=16,
                              d_mlp=64, epochs=150, checkpoint_every=50, eval_every=3, lr=1e-2,
                              device="cpu")
    run = RunStore(tmp_path_factory.mktemp("curves_runs")).create(cfg, run_id="moving")
    run.trainer().run(callback=run)
    return run


def test_curves_of_a_real_run_use_the_progress_measures_once_cached(moving_run):
    from grok_engine.context import context_for
    from grok_engine.studies.progress import cached_measures, progress_measures

    run = moving_run
    ctx = context_for(run, 100)  # the phases are the whole run's, whichever checkpoint is shown
    metrics = run.metrics()
    assert cached_measures(run) is None
    before = run_study("curves", ctx)
    for name in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc"):
        np.testing.assert_array_equal(col(before, "curves", name), getattr(metrics, name))
    assert before.scalars["phases_source"] == SOURCE_ACCURACY
    expected = find_phases(metrics)
    assert list(before.tables["phases"].columns["end_epoch"]) == [
        expected.memorization_end, expected.circuit_formation_end, expected.cleanup_end]
    assert all(math.isnan(v) for v in col(before, "phases", "restricted_loss_decades"))

    progress = progress_measures(run)
    measures = cached_measures(run)
    assert list(measures) == ["epoch", *progress.tables["measures"].column_names[1:]]
    np.testing.assert_array_equal(measures["sum_sq_weights"], progress.tables["measures"].columns["sum_sq_weights"])
    after = run_study("curves", ctx)
    assert after.scalars["phases_source"] == SOURCE_PROGRESS
    assert set(col(after, "phases", "source")) == {SOURCE_PROGRESS}
    with_measures = find_phases(metrics, measures)
    assert list(after.tables["phases"].columns["end_epoch"]) == [
        with_measures.memorization_end, with_measures.circuit_formation_end, with_measures.cleanup_end]
    # the progress study reports the same phase ends (the Progress pane draws them)
    for key, value in with_measures.as_dict().items():
        assert progress.scalars[key] == value
    # use_progress=False: the accuracy rule again
    assert run_study("curves", ctx, use_progress=False).scalars["phases_source"] == SOURCE_ACCURACY
    assert after.scalars["epoch"] == ctx.epoch


def test_a_stale_progress_cache_is_not_used(moving_run, tmp_path):
    """A checkpoint the cache has not seen (training went on): the fallback, not old measures."""
    import shutil

    from grok_engine.store import Run
    from grok_engine.studies.progress import cached_measures, progress_measures

    copy = Run(Path(shutil.copytree(moving_run.path, tmp_path / "moving")))
    progress_measures(copy)
    assert cached_measures(copy) is not None
    last = copy.checkpoint_epochs()[-1]
    shutil.copy(copy.checkpoint_path(last), copy.checkpoint_path(last + 50))
    assert cached_measures(copy) is None


def test_export_all_computes_the_progress_measures_before_the_phases(moving_run, tmp_path):
    import shutil

    from grok_engine.context import context_for
    from grok_engine.export import export_all
    from grok_engine.store import Run

    copy = Run(Path(shutil.copytree(moving_run.path, tmp_path / "moving")))
    seen = {}
    export_all(context_for(copy, 150), tmp_path / "out", on_result=lambda r, p: seen.setdefault(r.study, r))
    assert list(seen)[0] == "curves"  # reported in registry order...
    assert seen["curves"].scalars["phases_source"] == SOURCE_PROGRESS  # ...computed after progress


@pytest.mark.parametrize("options,word", [({"acc_threshold": 1.5}, "acc_threshold=1.5"),
                                          ({"cleanup_decades": -1}, "cleanup_decades=-1"),
                                          ({"use_progress": "yes"}, "use_progress='yes'")])
def test_bad_options_are_refused_by_name(tiny_ctx_add, options, word):
    with pytest.raises(GrokError, match=word):
        run_study("curves", tiny_ctx_add, **options)
