"""Model-epochs per second of a stacked pack against its size, on this machine's CPU.

    PYTHONPATH=. .venv/bin/python bench/pack_size.py [--epochs 60] [--sizes 1,2,4,8,16,32]
                                                     [--model notebook|tiny]

p=23 mod_add, frac 0.3, members differing in seed and weight decay, one thread (the pack's
numpy path runs on one; two packs in two processes fill two cores). Each size trains
``--epochs`` epochs of fresh members, timed after the first epoch; "solo" is the same
members with the solo Trainer one after another. The figures behind
:func:`grok_engine.sweep.pack.pack_size`; on a shared machine treat them as rough.
"""

from __future__ import annotations

import argparse
import time

from machine import describe

from grok_engine.config import RunConfig
from grok_engine.sweep.stacked import StackedTrainer
from grok_engine.train import Trainer

MODELS = {"notebook": {}, "tiny": dict(n_heads=2, d_model=32, d_head=16, d_mlp=64)}


def configs(m: int, epochs: int, model: str) -> list[RunConfig]:
    base = dict(task="mod_add", p=23, frac_train=0.3, epochs=epochs, checkpoint_every=10 * epochs,
                device="cpu", **MODELS[model])
    return [RunConfig().replace(**base, seed=i, weight_decay=(0.3, 1.0)[i % 2]) for i in range(m)]


def pack_rate(m: int, epochs: int, model: str) -> float:
    pack = StackedTrainer([Trainer(c) for c in configs(m, epochs, model)])
    marks: list[float] = []
    pack.run(on_epoch=lambda: marks.append(time.perf_counter()))
    return m * (len(marks) - 1) / (marks[-1] - marks[0])


def solo_rate(m: int, epochs: int, model: str) -> float:
    start = time.perf_counter()
    for c in configs(m, epochs, model):
        Trainer(c).run()
    return m * epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--sizes", default="1,2,4,8,16,32")
    parser.add_argument("--model", choices=sorted(MODELS), default="notebook")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(describe())
    print(f"p=23 mod_add, model {args.model}, {args.epochs} epochs, one thread")
    solo = solo_rate(4, args.epochs, args.model)
    print(f"{'pack':>6} {'model-epochs/s':>15} {'x solo':>7}")
    print(f"{'solo':>6} {solo:15.1f} {1.0:7.2f}")
    for m in (int(s) for s in args.sizes.split(",")):
        rate = pack_rate(m, args.epochs, args.model)
        print(f"{m:6d} {rate:15.1f} {rate / solo:7.2f}", flush=True)


if __name__ == "__main__":
    main()
