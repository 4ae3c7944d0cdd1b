"""grok_engine.paths (the runs folder, the run-id rule, exports), grok_engine.runtime (the
process-wide settings of each role) and grok_engine.param_names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grok_engine import param_names as names
from grok_engine import paths, runtime
from grok_engine.errors import GrokError

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_runs_dir_is_the_argument_then_the_environment_then_runs(monkeypatch):
    monkeypatch.delenv(paths.RUNS_DIR_ENV, raising=False)
    assert paths.resolve_runs_dir(None) == Path("runs")
    monkeypatch.setenv(paths.RUNS_DIR_ENV, "/data/grok")
    assert paths.resolve_runs_dir(None) == Path("/data/grok") == paths.default_runs_dir()
    assert paths.resolve_runs_dir("elsewhere") == Path("elsewhere")


@pytest.mark.parametrize("run_id", ["a", "run-1", "p113.wd_1", "x" * paths.RUN_ID_MAX])
def test_safe_run_ids_pass(run_id):
    paths.check_run_id(run_id)


@pytest.mark.parametrize("run_id, needle", [("../up", "not allowed"), (".hidden", "not allowed"),
                                            ("a/b", "not allowed"), ("", "not allowed"),
                                            ("x" * (paths.RUN_ID_MAX + 1), "at most 100")])
def test_unsafe_run_ids_are_refused_naming_the_rule(run_id, needle):
    with pytest.raises(GrokError, match=needle):
        paths.check_run_id(run_id)


def test_exports_go_below_exports_by_run_and_epoch():
    assert paths.export_folder("r1", 200) == Path("exports/r1/epoch200")
    assert paths.export_file("r1", "f.csv") == Path("exports/r1/f.csv")


def test_paths_and_the_light_modules_import_without_torch():
    code = ("import sys, json; import grok_engine.paths, grok_engine.runtime, grok_engine.atomic, "
            "grok_engine.param_names, grok_tui.format; "
            "print(json.dumps(sorted({'torch', 'numpy', 'textual'} & set(sys.modules))))")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_child_role_leaves_a_core_and_is_niced():
    code = ("import os, torch; from grok_engine import runtime; before = os.nice(0); "
            "runtime.configure('child'); print(before, os.nice(0) - before, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, niced, threads = map(int, out.stdout.split())
    # 10 more, up to 19, the most there is (a suite run under `nice` starts higher)
    assert niced == min(10, 19 - before) and threads == max(1, (os.cpu_count() or 1) - 1)


def test_the_train_role_gives_a_small_cpu_model_one_thread():
    from grok_engine.config import RunConfig

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runtime.configure("train", config=RunConfig().replace(p=7, d_model=32, d_mlp=64),
                          device=torch.device("cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        runtime.configure("train", config=RunConfig().replace(p=113), device=torch.device("cpu"))
        assert torch.get_num_threads() == 2  # 113*113 rows * 128 * 512: large enough to split
    finally:
        torch.set_num_threads(before)


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="'bogus'"):
        runtime.configure("bogus")


def test_study_threads_leave_a_core_to_a_training_child():
    before = torch.get_num_threads()
    try:
        cores = os.cpu_count() or 1
        assert runtime.study_threads(training=True) == max(1, cores - 1) == torch.get_num_threads()
        assert runtime.study_threads(training=False) == cores == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_param_names_are_hooked_transformers_keys_and_w_logit_is_w_out_at_w_u():
    from grok_engine.config import RunConfig
    from grok_engine.weights import init_weights, param_shapes

    cfg = RunConfig().replace(p=7, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_layers=2)
    keys = [k for k, _ in param_shapes(cfg.task, cfg.model)]
    assert {names.W_E, names.W_POS, names.W_U, names.B_U, names.attn(1, "W_Q"), names.mlp(1, "W_out")} <= set(keys)
    w = init_weights(cfg.task, cfg.model)
    expected = w["blocks.1.mlp.W_out"] @ w["unembed.W_U"]
    assert torch.equal(names.w_logit(w, 1), expected)
    as64 = names.w_logit(w, 1, cast=lambda t: t.to(torch.float64))
    assert as64.dtype == torch.float64 and torch.allclose(as64, expected.double(), atol=1e-6)
