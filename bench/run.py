"""grok-tui against the notebook's own pipeline, side by side, in one run.

    .venv/bin/python bench/run.py [--quick] [--only a,b,c,d,e] [--reps N]

(a) the notebook's default experiment (add, p=10, frac 0.72, 5000 epochs), whole processes
(b) mod_add p=113 frac 0.3: ms per epoch, test loss every epoch on both sides
(c) time to 99% test accuracy with `--preset fast` on p=113 mod_add
(d) the studies of one checkpoint and the progress-measure pass (bench/studies_bench.py)
(e) the TUI (bench/tui_bench.py, if present)
(f) the p=113 training loop's GFLOP/s as a fraction of float32 matmul GFLOP/s (bench/flops.py)
(g) a 16-member p=23 sweep against 16 grok-tui train runs and the notebook's loop (bench/sweep_bench.py)

The anchor is ../shared/anchor (the notebook's cells on TransformerLens 3.9, in a venv of its
own); its side is skipped with a message when that folder is absent. Every figure is the
median of --reps whole-process runs timed with time.perf_counter around subprocess.run,
imports included. See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules, run as a script

from common import BENCH, Bench, Figure, find_anchor_python, fmt_ratio, ours_env, say  # noqa: E402
from machine import describe  # noqa: E402
from train_bench import bench_a, bench_b, bench_c  # noqa: E402


# -- (d) studies, (e) TUI --------------------------------------------------------------

def bench_d(bench: Bench) -> None:
    import studies_bench

    studies_bench.run(bench)


def bench_e(bench: Bench) -> None:
    script = BENCH / "tui_bench.py"
    if not script.exists():
        say("(e) TUI: skipped: bench/tui_bench.py does not exist")
        bench.add(Figure("(e) TUI", "skipped: bench/tui_bench.py absent"))
        return
    say("(e) TUI: bench/tui_bench.py")
    # tui_bench.py is another module's: pass --quick only where it takes it
    takes_quick = "--quick" in script.read_text()
    cmd = [sys.executable, str(script)] + (["--quick"] if bench.quick and takes_quick else [])
    result = subprocess.run(cmd, capture_output=True, text=True, env=ours_env(), timeout=3600)
    for line in (result.stdout + result.stderr).strip().splitlines():
        say(f"    | {line}")
    bench.add(Figure("(e) TUI (see its own lines above)",
                     "ran" if result.returncode == 0 else f"failed (exit {result.returncode})"))


def bench_f(bench: Bench) -> None:
    import flops

    say("(f) training loop efficiency: GFLOP/s over float32 matmul GFLOP/s, in one process "
        "(model flops, and the flops the path executes: bench/flops.py)")
    peak = flops.matmul_gflops()
    model, executed, ms, path = flops.loop_gflops(113, 10 if bench.quick else 40)
    say(f"    {path} path {ms:.1f} ms/epoch, model {model:.1f} GFLOP/s, executed {executed:.1f} GFLOP/s; "
        f"matmul {peak:.1f} GFLOP/s")
    bench.add(Figure("(f) p=113 loop model GFLOP/s / matmul GFLOP/s", f"{model / peak:.0%}",
                     note=f"{model:.1f} of {peak:.1f} GFLOP/s; executed {executed:.1f} ({executed / peak:.0%})",
                     absolute=model / peak >= 0.40))


def bench_g(bench: Bench) -> None:
    import sweep_bench

    sweep_bench.run(bench)


SECTIONS = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d, "e": bench_e, "f": bench_f,
            "g": bench_g}


def summary(bench: Bench) -> None:
    rows = [("figure", "grok-tui", "notebook (anchor)", "ratio", "target", "verdict")]
    for f in bench.figures:
        rows.append((f.name, f.ours, f.anchor, fmt_ratio(f.ratio),
                     "-" if f.target is None else f">= {f.target:g}x", f.verdict))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    say()
    say("=" * 100)
    say("SUMMARY" + ("  (--quick: smoke check, not the real figures)" if bench.quick else ""))
    say(describe())
    for i, row in enumerate(rows):
        say("  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            say("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer reps and epochs: a smoke check")
    parser.add_argument("--only", default="a,b,c,d,e,f,g", help="sections to run, e.g. a,b")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per timing (default 3; 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, anchor files)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"bench: --only {','.join(unknown)} is unknown: choose from {','.join(SECTIONS)}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="grok-bench-"))
    anchor_python, why = find_anchor_python()
    bench = Bench(quick=args.quick, reps=args.reps or (1 if args.quick else 3), workdir=workdir,
                  anchor_python=anchor_python, anchor_why_not=why)
    import platform

    import torch

    say(f"bench: {platform.node()} {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), cuda {torch.cuda.is_available()}; work folder {workdir}")
    say(describe())
    say(f"anchor: {anchor_python or why}")
    failed = False
    try:
        for name in only:
            try:
                SECTIONS[name](bench)
            except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
                failed = True
                say(f"({name}) FAILED: {exc}")
                bench.add(Figure(f"({name})", f"error: {str(exc).splitlines()[0][:80]}"))
            say()
    finally:
        summary(bench)
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
