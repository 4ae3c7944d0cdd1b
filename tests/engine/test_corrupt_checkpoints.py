"""One corrupt checkpoint hides no other: the progress study and ``grok-tui export`` skip it
and name it; export keeps its cache out of the run folder unless --out lies inside it."""

from __future__ import annotations

import shutil

import pytest

from grok_engine.store import RunStore
from grok_engine.studies.progress import progress_measures
from grok_tui.cli import main

@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_factory):
    return tiny_factory.trained_run(tmp_path_factory.mktemp("trained") / "runs", "r", epochs=40, checkpoint_every=10)


@pytest.fixture
def zeroed(trained, tmp_path):
    """A copy of the run whose mid-run checkpoint (epoch 20) is all zero bytes."""
    root = tmp_path / "runs"
    shutil.copytree(trained.path, root / "r")
    path = root / "r" / "checkpoints" / "epoch_000020.safetensors"
    path.write_bytes(b"\0" * path.stat().st_size)
    return RunStore(root).open("r"), path


def test_progress_skips_a_corrupt_checkpoint_and_names_it(zeroed):
    run, path = zeroed
    seen = []
    result = progress_measures(run, progress_callback=lambda done, todo, epoch: seen.append(epoch))
    assert list(result.tables["measures"].columns["epoch"]) == [e for e in run.checkpoint_epochs() if e != 20]
    assert result.scalars["skipped_checkpoints"] == [20]
    assert str(path) in result.scalars["note"] and "corrupt" in result.scalars["note"]
    assert result.scalars["n_checkpoints"] == len(run.checkpoint_epochs()) - 1
    assert seen == run.checkpoint_epochs()  # the progress bar still reaches its end
    again = progress_measures(run)  # from the cache written above: the skip is said again
    assert again.scalars["n_computed"] == 0 and again.scalars["skipped_checkpoints"] == [20]


def test_a_corrupt_final_checkpoint_takes_key_frequencies_from_the_newest_good_one(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained.path, root / "r")
    (root / "r" / "checkpoints" / "epoch_000040.safetensors").write_bytes(b"junk")
    result = progress_measures(RunStore(root).open("r"))
    assert result.scalars["skipped_checkpoints"] == [40]
    assert list(result.tables["measures"].columns["epoch"]) == [
        e for e in RunStore(root).open("r").checkpoint_epochs() if e != 40]


def test_export_all_of_the_last_checkpoint_skips_the_corrupt_one(zeroed, tmp_path, capsys):
    run, path = zeroed
    out = tmp_path / "out"
    assert main(["export", "r", "--all", "--out", str(out), "--runs-dir", str(run.path.parent)]) == 0
    printed = capsys.readouterr().out
    progress_line = next(line for line in printed.splitlines() if line.startswith("progress:"))
    assert "skipped_checkpoints=[20]" in progress_line and str(path) in progress_line
    assert any(out.glob("progress_measures_table_epoch*.csv"))
    assert not (run.path / "analysis").exists()  # --out is elsewhere: no cache in the run


def test_export_caches_progress_only_when_out_is_inside_the_run(trained, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(trained.path, root / "r")
    inside = root / "r" / "exports"
    assert main(["export", "r", "--study", "progress", "--out", str(inside), "--runs-dir", str(root)]) == 0
    assert (root / "r" / "analysis" / "progress.safetensors").is_file()
    capsys.readouterr()


def test_the_analysis_cache_is_best_effort(trained, tmp_path, monkeypatch):
    import grok_engine.store as store_module

    def refuse(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(store_module, "atomic_save_tensors", refuse)
    assert trained.save_analysis("x", {}) is False
