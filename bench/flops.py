"""(f) The training loop's achieved GFLOP/s as a fraction of this machine's float32 matmul
throughput: a figure that transfers between machines, unlike milliseconds.

    .venv/bin/python bench/flops.py [--p 113] [--epochs 40]

Flops counted: the matmuls of the fast forward at '=' (``grok_engine.fast``, 1-layer, no
LayerNorm) per row, F = 2*d_model*d_mlp (W_in) + 2*d_mlp*d_vocab (W_logit) + 2*d_model*d_vocab
(W_U) + 6*n_heads*d_model (the attention-weighted sums), plus W_logit = W_out @ W_U once per
forward; the backward costs 2F (the input and the weight gradient of every matmul). An epoch
is a forward and a backward of the train rows and a forward of the test rows. Per-token
tables (2p+1 rows) and elementwise ops are left out: they are a few percent at p=113.

The reference is ``torch.mm`` of two 2048x2048 float32 matrices on every core (best of 5),
measured in the same process, so both figures share the machine, the threads and the BLAS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def epoch_flops(config, n_train: int, n_test: int) -> float:
    """Matmul flops of one training epoch (see the module docstring)."""
    m, t = config.model, config.task
    D, M, V, H = m.d_model, m.d_mlp, t.d_vocab_out, m.n_heads
    per_row = 2 * D * M + 2 * M * V + 2 * D * V + 6 * H * D
    w_logit = 2 * M * D * V
    return 3 * (per_row * n_train + w_logit) + per_row * n_test + w_logit


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def loop_gflops(p: int = 113, epochs: int = 40, warmup: int = 5) -> tuple[float, float, str]:
    """(achieved GFLOP/s, ms per epoch, path) of Trainer.run at mod_add p, frac 0.3, test
    loss every epoch, in this process."""
    from grok_engine.config import RunConfig
    from grok_engine.train import Trainer

    config = RunConfig().replace(task="mod_add", p=p, frac_train=0.3, eval_every=1,
                                 epochs=warmup + epochs, checkpoint_every=10 ** 6, device="cpu")
    trainer = Trainer(config)
    trainer.run(until_epoch=warmup)
    start = time.perf_counter()
    trainer.run(until_epoch=warmup + epochs)
    per_epoch = (time.perf_counter() - start) / epochs
    ds = trainer.dataset
    flops = epoch_flops(config, len(ds.train_indices), len(ds.test_indices))
    return flops / per_epoch / 1e9, 1e3 * per_epoch, "numpy" if trainer.manual else "autograd"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=113)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    from machine import describe

    print(describe())
    peak = matmul_gflops()
    achieved, ms, path = loop_gflops(args.p, args.epochs)
    print(f"(f) mod_add p={args.p} training loop ({path} path): {ms:.1f} ms/epoch, {achieved:.1f} GFLOP/s; "
          f"float32 matmul 2048^3 on all cores: {peak:.1f} GFLOP/s; fraction {achieved / peak:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
