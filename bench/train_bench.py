"""Training benches (a), (b), (c): grok-tui train against the notebook's loop (seed_train.py).

Every time is a whole process (imports included), the median of ``bench.reps`` runs.
"""

from __future__ import annotations

import re

from common import (GROK_TUI, Bench, Figure, anchor_cmd, fmt_ratio, median_timed, ours_env,
                    parse_float, run_timed, say)


# -- (a) the notebook's default --------------------------------------------------------

def bench_a(bench: Bench) -> None:
    epochs = 500 if bench.quick else 5000
    say(f"(a) notebook default: add p=10 frac 0.72, {epochs} epochs, whole process, {bench.reps} reps")
    ours_s, ours_all, out = median_timed(
        lambda i: [*GROK_TUI, "train", "--epochs", str(epochs), "--quiet",
                   "--runs-dir", str(bench.workdir / f"a-runs-{i}")],
        bench.reps, "grok-tui train", env=ours_env())
    say(f"    ours: {out.strip().splitlines()[-1][:160]}")
    anchor = "-"
    ratio = None
    if bench.anchor_python:
        save = bench.workdir / "anchor_add10.pth"
        anchor_s, _all, aout = median_timed(
            lambda i: anchor_cmd(bench, "seed_train.py", "--task", "add", "--p", "10", "--frac", "0.72",
                                 "--epochs", str(epochs), "--quiet-checkpoints", "--save", str(save)),
            bench.reps, "anchor seed_train.py")
        bench.files["add10"] = save
        loop = parse_float(r"training loop total\s*:\s*([\d.]+) s", aout)
        say(f"    anchor: process {anchor_s:.2f} s (its training loop alone: {loop} s)")
        anchor, ratio = f"{anchor_s:.2f} s", anchor_s / ours_s
    else:
        say(f"    {bench.anchor_why_not}")
    say(f"    ours {ours_s:.2f} s  anchor {anchor}  ratio {fmt_ratio(ratio)}")
    bench.add(Figure(f"(a) add p=10, {epochs} epochs, whole process", f"{ours_s:.2f} s", anchor, ratio,
                     5.0, "median of %d" % bench.reps))


# -- (b) p=113 per epoch ---------------------------------------------------------------

def per_epoch_ms(long_s: float, short_s: float, epochs: int) -> float:
    return 1e3 * (long_s - short_s) / (epochs - 1)


def bench_b(bench: Bench) -> None:
    epochs = 20 if bench.quick else 200
    say(f"(b) mod_add p=113 frac 0.3: ms/epoch = (process({epochs} epochs) - process(1 epoch)) / "
        f"{epochs - 1}, test loss every epoch, {bench.reps} reps")
    ours = {}
    for n in (1, epochs):
        ours[n], _all, out = median_timed(
            lambda i, n=n: [*GROK_TUI, "train", "--task", "mod_add", "--p", "113", "--frac-train", "0.3",
                            "--epochs", str(n), "--eval-every", "1", "--quiet",
                            "--runs-dir", str(bench.workdir / f"b-runs-{n}-{i}")],
            bench.reps, f"grok-tui train {n} epoch(s)", env=ours_env())
    ours_ms = per_epoch_ms(ours[epochs], ours[1], epochs)
    anchor, ratio = "-", None
    if bench.anchor_python:
        anchor_t, printed = {}, None
        for n in (1, epochs):
            save = bench.workdir / f"anchor_mod113_e{n}.pth"
            anchor_t[n], _all, aout = median_timed(
                lambda i, n=n, save=save: anchor_cmd(
                    bench, "seed_train.py", "--task", "mod", "--p", "113", "--frac", "0.3", "--epochs",
                    str(n), "--checkpoint-every", str(max(1, min(100, n // 2))), "--quiet-checkpoints",
                    "--save", str(save)),
                bench.reps, f"anchor seed_train.py {n} epoch(s)")
            if n == epochs:
                printed = parse_float(r"per epoch\s*:\s*([\d.]+) ms/epoch", aout)
                bench.files["mod113"] = save
        anchor_ms = per_epoch_ms(anchor_t[epochs], anchor_t[1], epochs)
        say(f"    anchor: {anchor_ms:.1f} ms/epoch (its own RESULT line, loop only: {printed} ms/epoch)")
        anchor, ratio = f"{anchor_ms:.1f} ms/epoch", anchor_ms / ours_ms
    else:
        say(f"    {bench.anchor_why_not}")
    say(f"    ours {ours_ms:.2f} ms/epoch  anchor {anchor}  ratio {fmt_ratio(ratio)}")
    bench.add(Figure(f"(b) mod_add p=113, per epoch ({epochs} vs 1 epoch)", f"{ours_ms:.2f} ms/epoch",
                     anchor, ratio, 5.0, "whole-process difference"))


# -- (c) time to 99% -------------------------------------------------------------------

REACHED_RE = re.compile(r"reached test acc >= ([\d.]+) at epoch (\d+) after ([\d.]+) s")


def bench_c(bench: Bench) -> None:
    max_epochs = 300 if bench.quick else 20000
    say(f"(c) time to 99% test accuracy: mod_add p=113 frac 0.3 --preset fast (at most {max_epochs} epochs)")
    elapsed, out = run_timed(
        [*GROK_TUI, "train", "--task", "mod_add", "--p", "113", "--frac-train", "0.3", "--preset", "fast",
         "--stop-at-test-acc", "0.99", "--epochs", str(max_epochs), "--quiet",
         "--runs-dir", str(bench.workdir / "c-runs"), "--run-id", "c-fast"], env=ours_env(), timeout=7200)
    match = REACHED_RE.search(out)
    if match:
        epoch, train_s = int(match.group(2)), float(match.group(3))
        bench.files["grokked_run"] = bench.workdir / "c-runs" / "c-fast"  # (d) analyses it
        ours = f"epoch {epoch}, {elapsed:.1f} s process ({train_s:.1f} s training)"
    else:
        ours = f"not reached in {max_epochs} epochs ({elapsed:.1f} s process)"
    say(f"    {ours}")
    bench.add(Figure("(c) p=113 mod_add to 99% test acc, --preset fast", ours,
                     "notebook: 25,000 epochs, ~3.3 h (anchor README)", note="one run"))
