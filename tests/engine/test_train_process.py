"""The app's training process: its JSON-lines protocol, stop on "stop" or end of input, and
the run it leaves on disk."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

from grok_engine.config import RunConfig
from grok_engine.store import RunStore
from grok_engine.train_process import train


def tiny_run(runs_dir, run_id="tp", **overrides):
    base = dict(task="mod_add", p=7, frac_train=0.5, n_heads=2, d_model=32, d_head=16, d_mlp=64,
                epochs=30, checkpoint_every=10, device="cpu")
    base.update(overrides)
    return RunStore(runs_dir).create(RunConfig().replace(**base), run_id=run_id)


class NeverEnds(io.StringIO):
    """A stdin that stays open until the test is over (iterating it blocks)."""

    def __iter__(self):
        while True:
            time.sleep(3600)
            yield ""


def events(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_reports_every_checkpoint_and_the_metrics_then_finishes(tmp_path):
    tiny_run(tmp_path)
    out = io.StringIO()
    assert train(str(tmp_path), "tp", None, out, NeverEnds()) == 0
    got = events(out)
    assert got[0] == {"event": "started", "epoch": 0}
    assert got[-1] == {"event": "finished", "epoch": 30, "stopped": False}
    reported = [e["epoch"] for e in got if e["event"] == "checkpoint"]
    assert {0, 10, 20, 30} <= set(reported) and reported == sorted(reported)  # + dense ones
    epochs = [n for e in got if e["event"] == "progress" for n in e["metrics"]["epoch"]]
    assert epochs == list(range(1, 31))
    run = RunStore(tmp_path).open("tp")
    assert run.checkpoint_epochs() == reported  # on disk before it was reported
    assert list(run.metrics().epoch) == epochs


def test_end_of_input_stops_after_a_checkpoint_and_resumes_there(tmp_path):
    tiny_run(tmp_path, epochs=1000, checkpoint_every=500)
    out = io.StringIO()
    assert train(str(tmp_path), "tp", None, out, io.StringIO("")) == 0  # the app went away
    last = events(out)[-1]
    assert last["event"] == "finished" and last["stopped"] and last["epoch"] < 1000
    assert RunStore(tmp_path).open("tp").checkpoint_epochs()[-1] == last["epoch"]
    out = io.StringIO()
    assert train(str(tmp_path), "tp", last["epoch"] + 5, out, NeverEnds()) == 0
    assert events(out)[0] == {"event": "started", "epoch": last["epoch"]}
    assert events(out)[-1] == {"event": "finished", "epoch": last["epoch"] + 5, "stopped": False}


def test_a_missing_run_is_one_error_line(tmp_path):
    out = io.StringIO()
    assert train(str(tmp_path), "nope", None, out, NeverEnds()) == 1
    (only,) = events(out)
    assert only["event"] == "error" and "nope" in only["message"]


def test_as_a_process_stop_on_stdin(tmp_path):
    tiny_run(tmp_path, epochs=100000, checkpoint_every=100000)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "grok_engine.train_process", str(tmp_path), "tp"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    first = json.loads(proc.stdout.readline())
    assert first == {"event": "started", "epoch": 0}
    json.loads(proc.stdout.readline())  # the epoch-0 checkpoint: it is training
    proc.stdin.write("stop\n")
    proc.stdin.close()
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    assert rest[-1]["event"] == "finished" and rest[-1]["stopped"]
    assert RunStore(tmp_path).open("tp").checkpoint_epochs()[-1] == rest[-1]["epoch"]


def test_divergence_is_an_error_with_its_epoch(tmp_path):
    tiny_run(tmp_path, p=23, frac_train=0.3, lr=10.0, epochs=400, checkpoint_every=2)
    out = io.StringIO()
    assert train(str(tmp_path), "tp", None, out, NeverEnds()) == 3
    last = events(out)[-1]
    assert last["event"] == "error" and last["diverged"] > 0
    assert f"run tp diverged at epoch {last['diverged']}" in last["message"]
    assert RunStore(tmp_path).open("tp").diverged()["epoch"] == last["diverged"]
