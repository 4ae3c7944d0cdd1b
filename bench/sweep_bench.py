"""(g) A 16-member sweep: ``grok-tui sweep`` against the same 16 configs trained one after
another with ``grok-tui train``, and against the notebook's loop once per model.

The grid: mod_add p=23, the notebook's model (d_model 128, d_mlp 512, 4 heads), weight
decay {0.3, 1} x frac_train {0.3, 0.5} x seed {1, 2, 3, 4}, EPOCHS epochs each, a test
evaluation every epoch, on the CPU. The figure is model-epochs per second (16 x EPOCHS over
the seconds taken):

* **sweep**: one ``grok-tui sweep`` process, imports and worker start-up included; the
  pack sizes it used are printed (its "N packs to train (sizes ...)" line).
* **one after another**: 16 ``grok-tui train`` processes in a row, whole processes.
* **notebook**: ../shared/anchor/seed_train.py (the notebook's cells) once per member's
  frac_train, counting only its training loop ("training loop total"), not its imports:
  the most favourable reading of a notebook user who loops over models in one kernel. The
  script fixes weight decay 1 and the init seed 999; its loop costs the same per epoch
  whatever they are, so each of the 16 models is timed with its own frac_train.

Targets (issue 14): the sweep >= 1.8x the one-after-another figure, >= 10x the notebook.
Run on its own: ``python bench/sweep_bench.py [--quick] [--epochs N] [--no-anchor]``;
bench/run.py calls :func:`run` as section (g). Do not run it on a shared machine: it keeps
both cores busy for minutes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules, run as a script

from common import (GROK_TUI, Bench, Figure, anchor_cmd, ours_env, parse_float, run_alone,  # noqa: E402
                    run_timed, say)

WEIGHT_DECAYS = (0.3, 1.0)
FRACS = (0.3, 0.5)
SEEDS = (1, 2, 3, 4)
SHARED = ["--task", "mod_add", "--p", "23", "--device", "cpu", "--eval-every", "1", "--quiet"]
PACKS_RE = re.compile(r"(\d+) packs to train \(sizes ([^)]*)\)")


def members() -> list[tuple[float, float, int]]:
    """(weight decay, frac_train, seed) of the 16 members, in the sweep's order."""
    return list(product(WEIGHT_DECAYS, FRACS, SEEDS))


def grid_flags() -> list[str]:
    return ["--grid", "weight-decay=" + ",".join(map(str, WEIGHT_DECAYS)),
            "--grid", "frac-train=" + ",".join(map(str, FRACS)),
            "--grid", "seed=" + ",".join(map(str, SEEDS))]


def time_sweep(bench: Bench, epochs: int) -> tuple[float, str]:
    """Seconds of one ``grok-tui sweep`` process; the pack sizes it printed."""
    runs = bench.workdir / "g-sweep"
    elapsed, out = run_timed([*GROK_TUI, "sweep", *SHARED, "--epochs", str(epochs),
                              "--checkpoint-every", str(max(1, epochs // 10)), *grid_flags(),
                              "--sweep-id", "bench", "--runs-dir", str(runs)], env=ours_env(), timeout=7200)
    match = PACKS_RE.search(out)
    packs = f"{match.group(1)} packs of {match.group(2)}" if match else "pack sizes not printed"
    result = re.search(r"^sweep bench: .*$", out, re.M)
    say(f"    sweep: {elapsed:.1f} s, {packs}; {result.group(0)[:140] if result else out[-200:]}")
    return elapsed, packs


def time_one_after_another(bench: Bench, epochs: int) -> float:
    """Seconds of the 16 ``grok-tui train`` processes, one after another."""
    total = 0.0
    for i, (wd, frac, seed) in enumerate(members()):
        elapsed, _out = run_timed([*GROK_TUI, "train", *SHARED, "--epochs", str(epochs),
                                   "--checkpoint-every", str(max(1, epochs // 10)),
                                   "--weight-decay", str(wd), "--frac-train", str(frac), "--seed", str(seed),
                                   "--run-id", f"solo-{i:03d}", "--runs-dir", str(bench.workdir / "g-solo")],
                                  env=ours_env(), timeout=3600)
        total += elapsed
    say(f"    one after another: {total:.1f} s for {len(members())} grok-tui train processes")
    return total


def time_notebook(bench: Bench, epochs: int) -> tuple[float, float]:
    """(training-loop seconds, whole-process seconds) of the anchor run once per member."""
    loops = whole = 0.0
    for i, (_wd, frac, _seed) in enumerate(members()):
        elapsed, out = run_timed(anchor_cmd(bench, "seed_train.py", "--task", "mod", "--p", "23",
                                            "--frac", str(frac), "--epochs", str(epochs),
                                            "--checkpoint-every", str(max(1, epochs // 10)),
                                            "--quiet-checkpoints", "--no-tqdm",
                                            "--save", str(bench.workdir / f"g-anchor-{i}.pth")), timeout=7200)
        loop = parse_float(r"training loop total\s*:\s*([\d.]+) s", out)
        if loop is None:
            raise RuntimeError("seed_train.py printed no 'training loop total' line")
        loops, whole = loops + loop, whole + elapsed
    say(f"    notebook: training loops {loops:.1f} s (whole processes {whole:.1f} s) for {len(members())} models")
    return loops, whole


def run(bench: Bench, epochs: int | None = None, anchor: bool = True) -> None:
    epochs = epochs or (20 if bench.quick else 2000)
    model_epochs = len(members()) * epochs
    say(f"(g) sweep: mod_add p=23, {len(members())} members (weight decay x frac_train x seed), "
        f"{epochs} epochs each = {model_epochs} model-epochs, CPU")
    started = time.perf_counter()
    sweep_s, packs = time_sweep(bench, epochs)
    solo_s = time_one_after_another(bench, epochs)
    sweep_rate, solo_rate = model_epochs / sweep_s, model_epochs / solo_s
    bench.add(Figure("(g) sweep vs grok-tui train x16, model-epochs/s", f"{sweep_rate:.0f}/s",
                     f"{solo_rate:.0f}/s (one after another)", sweep_rate / solo_rate, 1.8, packs))
    if anchor and bench.anchor_python:
        loop_s, whole_s = time_notebook(bench, epochs)
        note = f"notebook loop only; whole processes {model_epochs / whole_s:.0f}/s"
        bench.add(Figure("(g) sweep vs the notebook's loop x16, model-epochs/s", f"{sweep_rate:.0f}/s",
                         f"{model_epochs / loop_s:.0f}/s", sweep_rate * loop_s / model_epochs, 10.0, note))
    else:
        say(f"    notebook side skipped: {bench.anchor_why_not or '--no-anchor'}")
    say(f"    (g) took {time.perf_counter() - started:.0f} s; pack sizes: {packs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 epochs: a smoke check, not the figure")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per member (default 2000)")
    parser.add_argument("--no-anchor", action="store_true", help="leave the notebook side out")
    args = parser.parse_args(argv)
    return run_alone("g", lambda bench: run(bench, args.epochs, anchor=not args.no_anchor),
                     args.quick, reps=1, anchor=not args.no_anchor)

if __name__ == "__main__":
    sys.exit(main())
