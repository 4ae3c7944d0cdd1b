"""A stacked pack on a GPU against one model on the same GPU: model-epochs/s and memory.

    PYTHONPATH=. .venv/bin/python bench/pack_gpu.py [--members 256] [--p 113] [--epochs 30]
                                                    [--device cuda]

mod_add, frac 0.3, the notebook's model, members differing in seed and weight decay; the
pack is grok_engine.sweep.stacked's vmap'd torch stack. Each figure is timed after two
warm-up epochs. Memory: the peak the pack allocated on the device, per member. A short
script to run when a GPU is there (``--device cpu --members 4 --p 37`` runs it anywhere).
"""

from __future__ import annotations

import argparse
import time

import torch

from grok_engine.config import RunConfig
from grok_engine.sweep.stacked import StackedTrainer
from grok_engine.train import Trainer

WARM = 2


def configs(m: int, p: int, epochs: int, device: str) -> list[RunConfig]:
    base = dict(task="mod_add", p=p, frac_train=0.3, epochs=epochs, checkpoint_every=10 * epochs,
                device=device)
    return [RunConfig().replace(**base, seed=i, weight_decay=(0.3, 1.0)[i % 2]) for i in range(m)]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def pack_rate(m: int, p: int, epochs: int, device: str) -> tuple[float, float]:
    """(model-epochs/s, peak device bytes per member)"""
    pack = StackedTrainer([Trainer(c) for c in configs(m, p, epochs, device)])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    marks: list[float] = []

    def mark() -> None:
        sync(device)
        marks.append(time.perf_counter())

    pack.run(on_epoch=mark)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return m * (len(marks) - 1 - WARM) / (marks[-1] - marks[WARM]), peak / m


def solo_rate(p: int, epochs: int, device: str) -> float:
    trainer = Trainer(configs(1, p, epochs, device)[0])
    trainer.run(until_epoch=WARM)
    sync(device)
    start = time.perf_counter()
    trainer.run()
    sync(device)
    return (epochs - WARM) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--p", type=int, default=113)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{name}: mod_add p={args.p}, notebook model, {args.epochs} epochs")
    solo = solo_rate(args.p, args.epochs, args.device)
    rate, per_member = pack_rate(args.members, args.p, args.epochs, args.device)
    print(f"one model:        {solo:10.1f} model-epochs/s")
    print(f"pack of {args.members:4d}:     {rate:10.1f} model-epochs/s  ({rate / solo:.1f}x), "
          f"{per_member / 2**20:.1f} MiB per member")


if __name__ == "__main__":
    main()
