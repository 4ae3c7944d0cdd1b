"""Every bad input of ``grok-tui``, walked as a table: each row runs the real command (its
console-script entry, in a process of its own: tests/engine/cli_driver.py forks one per
row after importing torch once) and must exit 2 with one line on stderr that says what is
wrong, no traceback, and nothing created, removed or changed on disk.

Rows marked unprivileged run as user ``nobody`` when the tests run as root, so that
"permission denied" is real (root reads every file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.store import RunStore, with_buffers
from grok_engine.weights import init_weights

DRIVER = Path(__file__).with_name("cli_driver.py")
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = dict(task="mod_add", p=7, frac_train=0.5, n_heads=2, d_model=32, d_head=16, d_mlp=64,
            epochs=30, checkpoint_every=10, device="cpu")
CONFIG = RunConfig().replace(**TINY)

# flag -> (not a value of its type, a value outside what is allowed)
NUMERIC_FLAGS = {
    "--p": ("seven", "1001"), "--frac-train": ("half", "1"), "--data-seed": ("x", "-1"),
    "--seed": ("x", str(2**64)), "--epochs": ("many", "0"), "--checkpoint-every": ("x", "0"),
    "--eval-every": ("x", "0"), "--lr": ("fast", "nan"), "--weight-decay": ("x", "inf"),
    "--grokfast-alpha": ("x", "1"), "--grokfast-lamb": ("x", "-1"), "--n-layers": ("x", "17"),
    "--n-heads": ("x", "0"), "--d-model": ("x", "0"), "--d-head": ("x", "-3"),
    "--d-mlp": ("x", "65537"),
}
READ_ONLY_FOLDER = 0o555
CHOICE_FLAGS = {"--task": "mod_pow", "--act-fn": "tanh", "--normalization": "RMS",
                "--device": "tpu", "--preset": "turbo"}


def make_readable(root: Path) -> None:
    """Folders 755, files 644 (safetensors writes 0600): a row run as nobody reads them."""
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def notebook_dict(config: RunConfig) -> dict:
    """A small, valid file in the notebook's torch.save layout (config as a plain dict)."""
    t, m = config.task, config.model
    weights = init_weights(t, m)
    perm = torch.randperm(t.n_rows, generator=torch.Generator().manual_seed(0))
    return {
        "model": with_buffers(weights, m.n_layers),
        "config": dict(d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=3, n_layers=m.n_layers,
                       n_heads=m.n_heads, d_model=m.d_model, d_head=m.d_head, d_mlp=m.d_mlp,
                       act_fn=m.act_fn, normalization_type=None, seed=m.seed),
        "checkpoints": [with_buffers(weights, m.n_layers), with_buffers(weights, m.n_layers)],
        "checkpoint_epochs": [0, 1],
        "train_losses": [2.0, 1.9, 1.8], "test_losses": [2.1, 2.0, 1.9],
        "train_indices": perm[:24].clone(), "test_indices": perm[24:].clone(),
    }


def bad_notebook_files(folder: Path) -> dict[str, tuple[str, dict | object]]:
    """name -> (what the error line must say, what the file holds)."""
    good = notebook_dict(CONFIG)
    state = good["model"]
    wrong_shape = {**state, "embed.W_E": torch.zeros(3, 3)}
    cases = {
        "epochs_text": ("checkpoint_epochs", {**good, "checkpoint_epochs": ["a", "b"]}),
        "epochs_down": ("checkpoint_epochs", {**good, "checkpoint_epochs": [1, 0]}),
        "epochs_count": ("2 checkpoints", {**good, "checkpoint_epochs": [0]}),
        "epochs_past": ("past the 3 epochs", {**good, "checkpoint_epochs": [0, 7]}),
        "states_not_dicts": ("checkpoint 0", {**good, "checkpoints": [1, 2]}),
        "states_shapes": ("embed.W_E", {**good, "checkpoints": [state, wrong_shape]}),
        "states_ints": ("not floats", {**good, "model": {k: v.long() for k, v in state.items()}}),
        "indices_float": ("train_indices", {**good, "train_indices": good["train_indices"].float()}),
        "indices_range": ("cover", {**good, "train_indices": good["train_indices"] + 100}),
        "indices_twice": ("cover", {**good, "test_indices": good["train_indices"]}),
        "losses_2d": ("train_losses", {**good, "train_losses": [[1.0, 2.0], [3.0, 4.0]]}),
        "losses_text": ("train_losses", {**good, "train_losses": ["x", "y", "z"]}),
        "config_text": ("config", {**good, "config": {**good["config"], "d_model": "wide"}}),
        "no_model": ("lacks model", {k: v for k, v in good.items() if k != "model"}),
        "a_list": ("holds a list", [1, 2, 3]),
    }
    for name, (_needle, data) in cases.items():
        torch.save(data, folder / f"{name}.pth")
    (folder / "garbage.pth").write_bytes(b"\0" * 64)
    return cases


@pytest.fixture(scope="module")
def world():
    """A folder tree with a good run (and a read-only copy), broken runs, bad files, and
    permission traps."""
    root = Path(tempfile.mkdtemp(prefix="grok-bad-inputs-"))
    runs = root / "runs"
    store = RunStore(runs)
    run = store.create(CONFIG, run_id="A")
    run.trainer().run(callback=run)
    bad = root / "bad"
    for name in ("split_bad", "resume_bad", "ckpt_bad", "metrics_bad"):
        shutil.copytree(run.path, bad / name)
    from safetensors.torch import load_file, save_file

    save_file({"train_indices": torch.arange(3)}, str(bad / "split_bad" / "split.safetensors"))
    resume = bad / "resume_bad" / "resume" / "epoch_000030.safetensors"
    save_file({k: v for k, v in load_file(str(resume)).items() if k != "exp_avg/embed.W_E"}, str(resume))
    ckpt = bad / "ckpt_bad" / "checkpoints" / "epoch_000030.safetensors"
    ckpt.write_bytes(b"\0" * ckpt.stat().st_size)
    metrics = bad / "metrics_bad" / "metrics.safetensors"
    save_file({k: v for k, v in load_file(str(metrics)).items() if k != "test_acc"}, str(metrics))

    files = root / "files"
    files.mkdir()
    (files / "plain.txt").write_text("not a folder\n")
    (files / "task5.toml").write_text("task = 5\n")
    (files / "binary.toml").write_bytes(bytes(range(256)))
    (files / "folder.toml").mkdir()
    (files / "secret.toml").write_text("[task]\np = 7\n")
    (files / "p_text.toml").write_text('[task]\np = "seven"\n')
    (files / "other_p.toml").write_text("[task]\np = 11\n")
    (files / "huge.toml").write_text(f"[model]\nseed = {2**64}\n")
    (files / "secret.pth").write_bytes(b"")
    torch.save(notebook_dict(CONFIG), files / "good.pth")
    pth_cases = bad_notebook_files(files)
    (root / "cwd").mkdir()
    (root / "ro").mkdir()
    (root / "closed").mkdir()
    shutil.copytree(run.path, root / "ro_runs" / "A")
    shutil.copytree(run.path, root / "locked" / "A")
    make_readable(root)
    os.chmod(root / "locked" / "A" / "checkpoints" / "epoch_000030.safetensors", 0o000)
    for folder, _dirs, _files in os.walk(root / "ro_runs"):
        os.chmod(folder, READ_ONLY_FOLDER)
    os.chmod(root / "cwd", 0o777)
    os.chmod(root / "ro", 0o555)
    os.chmod(root / "closed", 0o000)
    os.chmod(files / "secret.toml", 0o000)
    os.chmod(files / "secret.pth", 0o000)
    yield root, pth_cases
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
    shutil.rmtree(root)


def bad_rows(root: Path, pth_cases: dict) -> list[tuple[list[str], str, bool]]:
    """(argv, text the error line must hold, run unprivileged)."""
    runs, bad, files = str(root / "runs"), str(root / "bad"), root / "files"
    fresh = str(root / "fresh")  # a runs folder that must not come into being
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["--quiet"]
    rows: list[tuple[list[str], str, bool]] = []

    def train(*argv: str, needle: str, runs_dir: str = fresh, unprivileged: bool = False) -> None:
        rows.append((["train", *argv, "--runs-dir", runs_dir], needle, unprivileged))

    for flag, (not_a_value, out_of_range) in NUMERIC_FLAGS.items():
        train(*tiny, flag, not_a_value, needle=not_a_value)
        train(*tiny, flag, out_of_range, needle="allowed")
    for flag, value in CHOICE_FLAGS.items():
        train(*tiny, flag, value, needle=value)
    train(*tiny, "--seed", "18446744073709551616", needle="seed=18446744073709551616")
    train(*tiny, "--run-id", "r" * 300, needle="300 characters")
    train(*tiny, "--run-id", "", needle="--run-id")
    train(*tiny, "--run-id", "../escape", needle="not allowed")
    train(*tiny, "--run-id", "A", needle="already exists", runs_dir=runs)
    train(*tiny, needle="is a file", runs_dir=str(files / "plain.txt"))
    train(*tiny, needle="a file", runs_dir=str(files / "plain.txt" / "runs"))
    train(*tiny, needle="--runs-dir", runs_dir="")
    train(*tiny, needle="permission denied", runs_dir=str(root / "ro"), unprivileged=True)
    for name, needle in (("task5.toml", "section 'task'"), ("binary.toml", "not valid TOML"),
                         ("folder.toml", "is a folder"), ("missing.toml", "does not exist"),
                         ("p_text.toml", "p='seven'"), ("huge.toml", "seed=")):
        train("--config", str(files / name), needle=needle)
    train("--config", str(files / "secret.toml"), needle="permission denied", unprivileged=True)
    train("--config", "", needle="--config")
    for acc in ("nan", "5", "0", "-0.5", "x"):
        train(*tiny, "--stop-at-test-acc", acc, needle=f"'{acc}'")
    train("--resume", "", needle="--resume", runs_dir=runs)
    train("--resume", "nope", needle="'nope' does not exist", runs_dir=runs)
    train("--resume", "A", "--p", "50", "--lr", "0.5", "--task", "mod_mul",
          needle="--task mod_mul (the run has task='mod_add'); --p 50 (the run has p=7); "
                 "--lr 0.5 (the run has lr=0.001)",
          runs_dir=runs)
    train("--resume", "A", "--epochs", "5", needle="below the 30 epochs", runs_dir=runs)
    train("--resume", "A", "--run-id", "B", needle="--run-id", runs_dir=runs)
    train("--resume", "A", "--preset", "fast", needle="--preset fast", runs_dir=runs)
    train("--resume", "A", "--config", str(files / "other_p.toml"), needle="task.p", runs_dir=runs)
    train("--resume", "A", "--epochs", "40", needle="cannot be trained further: permission denied",
          runs_dir=str(root / "ro_runs"), unprivileged=True)
    train("--resume", "split_bad", needle="test_indices", runs_dir=bad)
    train("--resume", "resume_bad", needle="exp_avg/embed.W_E", runs_dir=bad)
    train("--resume", "ckpt_bad", needle="epoch_000030.safetensors is corrupt", runs_dir=bad)
    train("--resume", "metrics_bad", needle="lacks test_acc", runs_dir=bad)

    rows.append((["runs", "--runs-dir", str(files / "plain.txt")], "is a file", False))
    rows.append((["runs", "--runs-dir", ""], "--runs-dir", False))
    rows.append((["runs", "--runs-dir", str(root / "closed")], "permission denied", True))

    def imp(*argv: str, needle: str, runs_dir: str = fresh, unprivileged: bool = False) -> None:
        rows.append((["import", *argv, "--runs-dir", runs_dir], needle, unprivileged))

    for name, (needle, _data) in pth_cases.items():
        imp(str(files / f"{name}.pth"), needle=needle)
    imp(str(files / "garbage.pth"), needle="loads safely")
    imp(str(files / "missing.pth"), needle="does not exist")
    imp(str(files / "folder.toml"), needle="is a folder")
    imp(str(files / "secret.pth"), needle="permission denied", unprivileged=True)
    imp("", needle="FILE.pth")
    good = str(files / "good.pth")
    imp(good, "--run-id", "x" * 101, needle="101 characters")
    imp(good, "--run-id", "A", needle="already exists", runs_dir=runs)
    imp(good, needle="is a file", runs_dir=str(files / "plain.txt"))
    imp(good, needle="permission denied", runs_dir=str(root / "ro"), unprivileged=True)

    def export(*argv: str, needle: str, runs_dir: str = runs) -> None:
        rows.append((["export", *argv, "--runs-dir", runs_dir], needle, False))

    export("nope", needle="'nope' does not exist")
    export("", needle="RUN")
    export("A", "--checkpoint", "x", needle="'x'")
    export("A", "--checkpoint", "7", needle="epoch=7 does not exist")
    export("A", "--study", "nope", needle="'nope'")
    export("A", "--all", "--study", "embedding", needle="not both")
    export("A", "--out", "", needle="--out")
    export("A", "--study", "embedding", "--out", str(files / "plain.txt"), needle="is a file, not a folder")
    export("A", needle="is a file", runs_dir=str(files / "plain.txt"))
    export("ckpt_bad", "--study", "embedding", needle="is corrupt", runs_dir=bad)
    rows.append((["export", "A", "--study", "embedding", "--runs-dir", str(root / "locked")],
                 "epoch_000030.safetensors cannot be read: permission denied", True))

    rows.append((["nope", "--runs-dir", runs], "'nope' does not exist", False))
    rows.append((["--runs-dir", ""], "--runs-dir", False))
    return rows


def run_rows(rows: list[dict], watch: Path, scratch: Path) -> list[dict]:
    """Each row's exit code, stdout, stderr and what it changed under ``watch``."""
    out_dir = scratch / "out"
    out_dir.mkdir()
    rows_file = scratch / "rows.json"
    rows_file.write_text(json.dumps(rows))
    proc = subprocess.run([sys.executable, str(DRIVER), str(rows_file), str(out_dir), str(watch)],
                          capture_output=True, text=True, env=CHILD_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for i, result in enumerate(results):
        result["out"] = (out_dir / f"{i}.out").read_text()
        result["err"] = (out_dir / f"{i}.err").read_text()
    return results


def test_every_bad_input_is_one_line_exit_2_and_leaves_nothing(world, tmp_path):
    root, pth_cases = world
    # the base of the bad .pth files imports: each bad file differs from it in one part
    from grok_engine.notebook_import import import_notebook

    import_notebook(root / "files" / "good.pth", RunStore(tmp_path / "control"))
    table = bad_rows(root, pth_cases)
    rows = [{"argv": argv, "cwd": str(root / "cwd"), "unprivileged": unprivileged,
             "env": {"COLUMNS": "80"}} for argv, _needle, unprivileged in table]
    results = run_rows(rows, root, tmp_path)
    failures = []
    for (argv, needle, _unprivileged), result in zip(table, results):
        err = result["err"]
        lines = err.strip().splitlines()
        problems = [what for what, bad in (
            (f"exit {result['code']}", result["code"] != 2),
            ("a traceback", "Traceback" in err),
            (f"{len(lines)} lines on stderr", len(lines) != 1),
            (f"no {needle!r}", needle not in err),
            (f"changed {result['changed'][:3]}", bool(result["changed"])),
        ) if bad]
        if problems:
            failures.append(f"{argv[:6]}: {', '.join(problems)}: {err.strip()[-300:]!r}")
    assert not failures, f"{len(failures)} of {len(table)} rows:\n" + "\n".join(failures)


def test_export_writes_only_under_out_even_from_a_read_only_run(world, tmp_path):
    """Export keeps its progress cache to itself when --out is elsewhere, so a read-only run
    (a copy with read-only folders, read by nobody) exports like any other."""
    root, _ = world
    ro_runs = root / "ro_runs"  # read-only folders: run as nobody, nothing can be written
    outs = [root / "cwd" / "as_owner", root / "cwd" / "read_only"]
    rows = [{"argv": ["export", "A", "--study", "progress", "--out", str(out),
                      "--runs-dir", str(ro_runs if ro else root / "runs")],
             "cwd": str(root / "cwd"), "unprivileged": ro} for out, ro in zip(outs, (False, True))]
    for result, out in zip(run_rows(rows, root, tmp_path), outs):
        assert result["code"] == 0 and result["err"] == "", result["err"]
        assert "wrote" in result["out"] and any(out.glob("progress_measures_table_epoch*.csv"))
        assert result["changed"] and all(Path(p).is_relative_to(out) for p in result["changed"]), \
            result["changed"]
