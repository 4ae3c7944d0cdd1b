"""CSV export: tables, grids, a whole study result, every study of a checkpoint, and the
``grok-tui export`` command (on a tiny run: p=7, 6 epochs)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from grok_engine.errors import GrokError
from grok_engine.export import export_all, export_file_name, export_result, write_csv
from grok_engine.results import Grid, StudyResult, Table
from tests.fixtures import EXPORT_RUN, train_tiny_run


def read(path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_table_is_header_then_rows_at_full_precision(tmp_path):
    t = Table("pca", {"component": np.array([1, 2]), "explained": np.array([0.1 + 0.2, np.nan]),
                      "label": ["x", "y,z"]})
    path = write_csv(t, tmp_path / "deep" / "pca.csv")
    assert read(path) == [["component", "explained", "label"],
                          ["1", "0.30000000000000004", "x"], ["2", "nan", "y,z"]]


def test_grid_has_axis_corner_and_labels(tmp_path):
    g = Grid("logits", np.arange(6.0).reshape(2, 3), "a", "b", [0, 1], [5, 6, 7])
    rows = read(write_csv(g, tmp_path / "g.csv"))
    assert rows[0] == ["a\\b", "5", "6", "7"]
    assert rows[1:] == [["0", "0.0", "1.0", "2.0"], ["1", "3.0", "4.0", "5.0"]]


def test_unwritable_path_is_a_grok_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = Table("t", {"k": [1]})
    with pytest.raises(GrokError, match=str(blocker)):
        write_csv(t, blocker / "sub" / "t.csv")
    with pytest.raises(GrokError, match="is a folder"):
        write_csv(t, tmp_path)


def test_write_is_atomic_no_temp_files_left(tmp_path):
    t = Table("t", {"k": list(range(1000))})
    write_csv(t, tmp_path / "t.csv")
    write_csv(Table("t", {"k": [1]}), tmp_path / "t.csv")  # replaced whole
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
    assert read(tmp_path / "t.csv") == [["k"], ["1"]]


def test_export_result_names_files_by_study_item_kind_and_epoch(tmp_path):
    r = StudyResult("embedding", 100, scalars={"pc12_explained": 0.97})
    r.add(Table("pca", {"component": [1], "explained": [0.5]}))
    r.add(Grid("W_E", np.eye(2), "token", "d_model", [0, 1], [0, 1]))
    paths = export_result(r, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["embedding_W_E_grid_epoch100.csv", "embedding_pca_table_epoch100.csv",
                                             "embedding_scalars_epoch100.csv"]
    assert read(tmp_path / "out" / "embedding_scalars_epoch100.csv") == [["name", "value"],
                                                                         ["pc12_explained", "0.97"]]


def test_a_table_and_a_grid_of_one_name_and_options_get_files_of_their_own(tmp_path):
    """The issue's losses: ablation's table and grid "failures" wrote one file; a neuron's
    grid had the same name for every neuron."""
    r = StudyResult("ablation", 7, scalars={"n_failures": 1})
    r.add(Table("failures", {"a": [1], "b": [2], "true": [3], "predicted": [4]}, options={"keep": [1, 2]}))
    r.add(Grid("failures", np.eye(2), "a", "b", [0, 1], [0, 1], options={"keep": [1, 2]}))
    paths = export_result(r, tmp_path)
    assert [p.name for p in paths] == ["ablation_failures_table_keep-1+2_epoch7.csv",
                                       "ablation_failures_grid_keep-1+2_epoch7.csv",
                                       "ablation_scalars_keep-1+2_epoch7.csv"]
    assert read(paths[0])[0] == ["a", "b", "true", "predicted"] and read(paths[1])[0][0] == "a\\b"
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)
    for neuron in (3, 12):
        grid = Grid("pre", np.eye(2), "a", "b", [0, 1], [0, 1], options={"neuron": neuron})
        assert export_file_name("neurons", grid, 2000) == f"neurons_pre_grid_neuron-{neuron}_epoch2000.csv"
    odd = Table("t", {"k": [1]}, options={"key_freqs": "4, 2/x", "threshold": 0.85})
    assert export_file_name("fourier", odd, 1) == "fourier_t_table_key_freqs-4-2-x_threshold-0.85_epoch1.csv"


def test_two_items_of_one_file_name_are_refused(tmp_path):
    r = StudyResult("x", 1)
    r.add(Table("scalars", {"k": [1]}))
    r.add(Table("scalars_table", {"k": [2]}))  # distinct items, but...
    r.tables["scalars_table"].name = "scalars"  # ...two of one name cannot both be written
    with pytest.raises(GrokError, match="names two items alike: x_scalars_table_epoch1.csv"):
        export_result(r, tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("export_runs"), "tiny", **EXPORT_RUN)


def test_export_all_writes_every_registered_study_one_file_per_path(tiny_run, tmp_path):
    from grok_engine.context import context_for
    from grok_engine.studies import STUDY_MODULES

    seen, per_study = [], {}
    paths = export_all(context_for(tiny_run, 6), tmp_path,
                       on_result=lambda r, p: (seen.append(r.study), per_study.update({r.study: len(p)})))
    assert seen == list(STUDY_MODULES)
    for study in STUDY_MODULES:
        assert any(p.name.startswith(f"{study}_") for p in paths), study
    # what is reported is what is on disk: no file written over another
    assert len(set(paths)) == len(paths) == sum(per_study.values()) == len(os.listdir(tmp_path))
    names = {p.name for p in paths}
    assert {"ablation_failures_table_keep-1_epoch6.csv", "ablation_failures_grid_keep-1_epoch6.csv",
            "attention_mean_pattern_table_layer-0_epoch6.csv", "embedding_pc_scores_grid_epoch6.csv",
            "embedding_pc_scores_table_epoch6.csv"} <= names
    from grok_engine.studies import run_study

    top = run_study("neurons", context_for(tiny_run, 6)).scalars["neuron"]  # the default neuron
    assert {f"neurons_pre_grid_neuron-{top}_epoch6.csv", f"neurons_post_grid_neuron-{top}_epoch6.csv",
            f"neurons_scalars_neuron-{top}_epoch6.csv", "neurons_ranking_table_epoch6.csv"} <= names
    assert read(tmp_path / "ablation_failures_table_keep-1_epoch6.csv")[0] == ["a", "b", "true", "predicted"]


def test_export_all_without_a_run_leaves_out_run_studies(tiny_run, tmp_path):
    from grok_engine.context import context_from_weights

    ctx = context_from_weights(tiny_run.config, tiny_run.load_checkpoint(6), epoch=6)
    seen = []
    export_all(ctx, tmp_path, on_result=lambda r, p: seen.append(r.study))
    assert "progress" not in seen and "curves" not in seen and "embedding" in seen
    with pytest.raises(GrokError, match="needs a run"):
        export_all(ctx, tmp_path, studies=["progress"])
