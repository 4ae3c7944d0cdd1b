"""Model-epochs per second of a stacked pack against its size, on this machine's CPU.

    PYTHONPATH=. .venv/bin/python bench/pack_size.py [--epochs 60] [--sizes 1,2,4,8,16,32]
                                                     [--model notebook|tiny] [--p 23]

p=23 (or --p) mod_add, frac 0.3, members differing in seed and weight decay, one thread (the pack's
numpy path runs on one; two packs in two processes fill two cores). Each size trains
``--epochs`` epochs of fresh members, timed after the first epoch; "solo" is the same
members with the solo Trainer one after another. The figure is model-epochs per second of
this process's CPU time (one thread: its work, whatever else the shared machine runs;
wall-clock figures swung 2x between two runs there), with the wall-clock one beside it.
The figures behind :func:`grok_engine.sweep.pack.pack_size`.
"""

from __future__ import annotations

import argparse
import time

from machine import describe

from grok_engine.config import RunConfig
from grok_engine.sweep.stacked import StackedTrainer
from grok_engine.train import Trainer

MODELS = {"notebook": {}, "tiny": dict(n_heads=2, d_model=32, d_head=16, d_mlp=64)}


def configs(m: int, epochs: int, model: str, p: int) -> list[RunConfig]:
    base = dict(task="mod_add", p=p, frac_train=0.3, epochs=epochs, checkpoint_every=10 * epochs,
                device="cpu", **MODELS[model])
    return [RunConfig().replace(**base, seed=i, weight_decay=(0.3, 1.0)[i % 2]) for i in range(m)]


def pack_rate(m: int, epochs: int, model: str, p: int) -> tuple[float, float]:
    """(per CPU second, per wall second)"""
    pack = StackedTrainer([Trainer(c) for c in configs(m, epochs, model, p)])
    marks: list[tuple[float, float]] = []
    pack.run(on_epoch=lambda: marks.append((time.process_time(), time.perf_counter())))
    n = m * (len(marks) - 1)
    return n / (marks[-1][0] - marks[0][0]), n / (marks[-1][1] - marks[0][1])


def solo_rate(m: int, epochs: int, model: str, p: int) -> tuple[float, float]:
    """As pack_rate, timed after each member's first epoch."""
    cpu = wall = 0.0
    for c in configs(m, epochs, model, p):
        trainer = Trainer(c)
        trainer.run(until_epoch=1)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        trainer.run()
        cpu, wall = cpu + time.process_time() - cpu0, wall + time.perf_counter() - wall0
    return m * (epochs - 1) / cpu, m * (epochs - 1) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--sizes", default="1,2,4,8,16,32")
    parser.add_argument("--model", choices=sorted(MODELS), default="notebook")
    parser.add_argument("--p", type=int, default=23)
    args = parser.parse_args()
    from grok_engine import runtime

    runtime.configure("pack")  # as a sweep's worker: one torch thread, freed memory kept
    print(describe())
    print(f"p={args.p} mod_add, model {args.model}, {args.epochs} epochs, one thread")
    solo, solo_wall = solo_rate(4, args.epochs, args.model, args.p)
    print(f"{'pack':>6} {'model-epochs/cpu-s':>19} {'x solo':>7} {'model-epochs/s':>15} {'x solo':>7}")
    print(f"{'solo':>6} {solo:19.1f} {1.0:7.2f} {solo_wall:15.1f} {1.0:7.2f}")
    for m in (int(s) for s in args.sizes.split(",")):
        rate, wall = pack_rate(m, args.epochs, args.model, args.p)
        print(f"{m:6d} {rate:19.1f} {rate / solo:7.2f} {wall:15.1f} {wall / solo_wall:7.2f}", flush=True)


if __name__ == "__main__":
    main()
