"""(d) The studies of one checkpoint, and the progress-measure pass, against the notebook's cells.

Ours (a p=113 mod_add run trained here with `grok-tui train`, checkpoints every 10 epochs):

* singles: in a fresh process, ``context_for(run, last epoch)`` (the hooked model and one
  ``run_with_cache`` over all 12,769 pairs) plus every registered study except ``progress``
  on that context; the in-process time of context + studies, and each study's time.
* progress: in a fresh process, ``progress_measures(run)`` over every checkpoint with the
  analysis cache removed first: time per checkpoint, and the process's peak RSS
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end).

The anchor (the notebook's cells, timed inside its own scripts, imports excluded as ours are):

* seed_fourier.py (p=113): "TOTAL single-checkpoint cells" + "prerequisites" (the first-half
  cells the p=113 half reads), its five get_metrics per-checkpoint costs, its peak RSS;
* seed_analysis.py (p=10 addition): "TOTAL of the above" (the notebook's first-half analyses);
* seed_metrics.py (p=113): get_metrics restricted / excluded / cos_coeffs, s per checkpoint.

Run on its own: ``python bench/studies_bench.py [--quick]``; bench/run.py calls :func:`run`.
Robust to studies not existing yet: prints "skipped: <reason>".
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (GROK_TUI, Bench, Figure, anchor_cmd, find_anchor_python, fmt_ratio,  # noqa: E402
                    ours_env, run_timed, say)

RUN_ID = "d-mod113"


# -- the worker: runs inside a fresh interpreter -----------------------------------------

def worker_singles(runs_dir: str, run_id: str) -> dict:
    import time

    import torch

    from grok_engine.context import context_for
    from grok_engine.store import RunStore
    from grok_engine.studies import STUDY_MODULES, run_study

    import grok_engine.model  # noqa: F401  imported untimed, as the anchor times cells, not imports

    run = RunStore(runs_dir).open(run_id)
    epoch = run.checkpoint_epochs()[-1]
    names = [n for n in STUDY_MODULES if n != "progress"]
    t0 = time.perf_counter()
    ctx = context_for(run, epoch)
    context_ms = 1e3 * (time.perf_counter() - t0)
    studies, errors = {}, {}
    for name in names:
        t = time.perf_counter()
        try:
            run_study(name, ctx)
        except Exception as exc:  # noqa: BLE001 - report, keep timing the others
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        studies[name] = 1e3 * (time.perf_counter() - t)
    total = 1e3 * (time.perf_counter() - t0)
    return {"epoch": epoch, "context_ms": context_ms, "studies_ms": studies, "total_ms": total,
            "errors": errors, "threads": torch.get_num_threads()}


def worker_progress(runs_dir: str, run_id: str) -> dict:
    import resource
    import shutil
    import time

    from grok_engine.store import RunStore
    from grok_engine.studies.progress import progress_measures

    run = RunStore(runs_dir).open(run_id)
    shutil.rmtree(run.path / "analysis", ignore_errors=True)  # time the pass, not the cache
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = progress_measures(run)
    total = time.perf_counter() - t0
    n = int(result.scalars["n_checkpoints"])
    assert int(result.scalars["n_computed"]) == n
    return {"n_checkpoints": n, "total_s": total, "per_checkpoint_ms": 1e3 * total / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before, "key_frequencies": result.scalars.get("key_frequencies")}


def call_worker(kind: str, runs_dir: Path, run_id: str) -> tuple[float, dict]:
    elapsed, out = run_timed([sys.executable, __file__, "--worker", kind, str(runs_dir), run_id],
                             env=ours_env(), timeout=3600)
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    return elapsed, json.loads(line)


# -- anchor parsing ------------------------------------------------------------------------

def parse_ms(label_regex: str, text: str) -> float | None:
    match = re.search(label_regex + r"[^\n]*?:\s*([\d.]+) ms", text)
    return float(match.group(1)) if match else None


def parse_fourier(text: str) -> dict:
    metrics = {m.group(1): float(m.group(2)) for m in
               re.finditer(r"get_metrics (\w+)\s*: ([\d.]+) s/ckpt", text)}
    peak = re.search(r"peak RSS of the whole process: ([\d.]+) MB", text)
    return {"single_ms": parse_ms(r"TOTAL single-checkpoint cells", text),
            "prereq_ms": parse_ms(r"prerequisites \(first-half cells", text),
            "metrics_s_per_ckpt": metrics, "peak_rss_mb": float(peak.group(1)) if peak else None}


def parse_analysis(text: str) -> float | None:
    match = re.search(r"TOTAL of the above[^\n]*?\s([\d.]+) ms", text)
    return float(match.group(1)) if match else None


def parse_metrics(text: str) -> dict:
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"get_metrics (\w+)\s*: ([\d.]+) s/checkpoint", text)}


# -- the section -----------------------------------------------------------------------

def studies_missing() -> str | None:
    """Why the studies cannot be benched yet, or None."""
    code = ("from grok_engine.studies import STUDY_MODULES, get_study\n"
            "import grok_engine.context\n"
            "for n in STUDY_MODULES: get_study(n)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ours_env())
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit {result.returncode}"
    return None


def anchor_file(bench: Bench, key: str, task: str, p: str, frac: str, epochs: int) -> Path:
    """A notebook save file for the anchor's analysis scripts: the one (a)/(b) made in this
    bench run, else a short anchor training (not timed: analysis cost does not depend on it)."""
    if key in bench.files and bench.files[key].exists():
        return bench.files[key]
    save = bench.workdir / f"anchor_{key}_for_d.pth"
    say(f"    making {save.name} with seed_train.py ({epochs} epochs, not timed)")
    run_timed(anchor_cmd(bench, "seed_train.py", "--task", task, "--p", p, "--frac", frac, "--epochs",
                         str(epochs), "--checkpoint-every", str(max(1, epochs // 2)), "--no-tqdm",
                         "--quiet-checkpoints", "--save", str(save)), timeout=3600)
    bench.files[key] = save
    return save


def run(bench: Bench) -> None:
    say("(d) studies of one checkpoint and the progress-measure pass, p=113 mod_add")
    why = studies_missing()
    if why:
        say(f"    skipped: studies not available ({why})")
        bench.add(Figure("(d) studies", f"skipped: {why[:60]}"))
        return
    grokked = bench.files.get("grokked_run")
    if grokked is not None and grokked.exists():
        # the key frequencies of a grokked model are a handful, as in the notebook's [17, 25,
        # 32, 47]; an untrained model's embedding spreads over all of them and the restricted
        # and excluded losses then project onto every frequency
        runs_dir, run_id = grokked.parent, grokked.name
        say(f"    using (c)'s grokked run {run_id}")
    else:
        epochs = 20 if bench.quick else 200
        runs_dir, run_id = bench.workdir / "d-runs", RUN_ID
        say(f"    no grokked run from (c): training {epochs} epochs, checkpoints every 10")
        run_timed([*GROK_TUI, "train", "--task", "mod_add", "--p", "113", "--frac-train", "0.3",
                   "--epochs", str(epochs), "--checkpoint-every", "10", "--quiet", "--runs-dir",
                   str(runs_dir), "--run-id", run_id], env=ours_env(), timeout=3600)

    process_s, singles = call_worker("singles", runs_dir, run_id)
    for name, ms in singles["studies_ms"].items():
        flag = f"  ERROR {singles['errors'][name]}" if name in singles["errors"] else ""
        say(f"    ours {name:<10s} {ms:9.1f} ms{flag}")
    say(f"    ours context (hooked model + run_with_cache, all pairs) {singles['context_ms']:.1f} ms; "
        f"context + all studies {singles['total_ms']:.1f} ms; whole process {process_s:.1f} s")
    _, prog = call_worker("progress", runs_dir, run_id)
    say(f"    ours progress pass: {prog['n_checkpoints']} checkpoints in {prog['total_s']:.2f} s = "
        f"{prog['per_checkpoint_ms']:.1f} ms/checkpoint; peak RSS {prog['peak_rss_mb']:.0f} MB "
        f"({prog['rss_before_mb']:.0f} MB before the pass); {len(prog['key_frequencies'] or [])} key "
        f"frequencies {str(prog['key_frequencies'])[:80]}")

    singles_label = "(d) all studies of one checkpoint"
    progress_label = "(d) progress pass per checkpoint"
    rss_label = "(d) peak RSS, progress pass"
    ours_total = singles["total_ms"]
    if singles["errors"]:
        singles_label += f" ({len(singles['errors'])} studies raised)"
    if not bench.anchor_python:
        say(f"    {bench.anchor_why_not}")
        bench.add(Figure(singles_label, f"{ours_total:.0f} ms"))
        bench.add(Figure(progress_label, f"{prog['per_checkpoint_ms']:.1f} ms"))
        bench.add(Figure(rss_label, f"{prog['peak_rss_mb']:.0f} MB"))
        return

    mod_file = anchor_file(bench, "mod113", "mod", "113", "0.3", 20)
    add_file = anchor_file(bench, "add10", "add", "10", "0.72", 300)
    n_ckpt = 2 if bench.quick else 20
    _, fout = run_timed(anchor_cmd(bench, "seed_fourier.py", "--ckpt", str(mod_file), "--n-ckpt",
                                   str(n_ckpt)), timeout=7200)
    fourier = parse_fourier(fout)
    _, aout = run_timed(anchor_cmd(bench, "seed_analysis.py", "--ckpt", str(add_file)), timeout=3600)
    analysis_ms = parse_analysis(aout)
    _, mout = run_timed(anchor_cmd(bench, "seed_metrics.py", "--n-ckpt", str(n_ckpt), "--metrics",
                                   "restricted,excluded,cos"), timeout=7200)
    metrics = parse_metrics(mout)
    say(f"    anchor seed_fourier (p=113): single-checkpoint cells {fourier['single_ms']} ms, prerequisites "
        f"{fourier['prereq_ms']} ms, get_metrics s/ckpt {fourier['metrics_s_per_ckpt']}, "
        f"peak RSS {fourier['peak_rss_mb']} MB")
    say(f"    anchor seed_analysis (p=10): all analysis cells {analysis_ms} ms")
    say(f"    anchor seed_metrics (p=113): get_metrics s/checkpoint {metrics}")

    parts = [fourier["single_ms"], fourier["prereq_ms"], analysis_ms]
    if all(x is not None for x in parts):
        anchor_total = sum(parts)
        bench.add(Figure(singles_label, f"{ours_total:.0f} ms", f"{anchor_total:.0f} ms",
                         anchor_total / ours_total,
                         note="anchor: fourier single + prereq (p=113) + analysis (p=10)"))
    else:
        bench.add(Figure(singles_label, f"{ours_total:.0f} ms", "unparsed"))
    if metrics:
        anchor_ms = 1e3 * sum(metrics.values())
        bench.add(Figure(progress_label + " vs seed_metrics (3 metrics)",
                         f"{prog['per_checkpoint_ms']:.1f} ms", f"{anchor_ms:.0f} ms",
                         anchor_ms / prog["per_checkpoint_ms"]))
    if fourier["metrics_s_per_ckpt"]:
        anchor_ms = 1e3 * sum(fourier["metrics_s_per_ckpt"].values())
        bench.add(Figure(progress_label + " vs seed_fourier (5 metrics)",
                         f"{prog['per_checkpoint_ms']:.1f} ms", f"{anchor_ms:.0f} ms",
                         anchor_ms / prog["per_checkpoint_ms"]))
    if fourier["peak_rss_mb"]:
        bench.add(Figure(rss_label + " vs seed_fourier", f"{prog['peak_rss_mb']:.0f} MB",
                         f"{fourier['peak_rss_mb']:.0f} MB", fourier["peak_rss_mb"] / prog["peak_rss_mb"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "RUNS_DIR", "RUN_ID"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        kind, runs_dir, run_id = args.worker
        fn = {"singles": worker_singles, "progress": worker_progress}[kind]
        print(json.dumps(fn(runs_dir, run_id)), flush=True)
        return 0
    import shutil

    anchor_python, why = find_anchor_python()
    workdir = Path(tempfile.mkdtemp(prefix="grok-bench-d-"))
    bench = Bench(quick=args.quick, reps=1, workdir=workdir, anchor_python=anchor_python, anchor_why_not=why)
    try:
        run(bench)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for f in bench.figures:
        say(f"{f.name}: ours {f.ours}, anchor {f.anchor}, ratio {fmt_ratio(f.ratio)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
