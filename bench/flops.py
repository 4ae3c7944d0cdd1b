"""(f) The training loop's achieved GFLOP/s as a fraction of this machine's float32 matmul
throughput: a figure that transfers between machines, unlike milliseconds.

    .venv/bin/python bench/flops.py [--p 113] [--epochs 40]

Two counts of an epoch's flops (a forward and a backward of the train rows, a forward of the
test rows), printed side by side:

* model flops (as "model FLOPs utilisation" counts them: what the model's forward and
  backward take in the plain formulation, whatever the implementation skips): per row at
  '=', F = 2*d_model*d_mlp (W_in) + 2*d_mlp*d_vocab (W_logit) + 2*d_model*d_vocab (W_U) +
  6*n_heads*d_model (the attention-weighted sums), plus W_logit = W_out @ W_U once per
  forward; the backward costs 2F (the input and the weight gradient of every matmul). The
  target (>= 40%) is on this count, as before the test rows' table path.
* executed flops: the same for the train rows; the test rows go through
  ``fast.eval_logits``, which does per row 2*d_mlp*d_vocab (W_logit) and the bag's weighted
  sum of 3*n_heads+1 table rows of d_mlp+d_vocab, 2*(3*n_heads+1)*(d_mlp+d_vocab), and once
  per forward the projected table, 2*((2p+1)*n_heads+1)*d_model*(d_mlp+d_vocab), and W_logit.
  Skipping work lowers this one: at p=113 the test rows' W_in matmul (715M multiply-adds)
  is no longer done.

Per-token tables of the train rows (2p+1 rows) and elementwise ops are left out of both:
they are a few percent at p=113.

The reference is ``torch.mm`` of two 2048x2048 float32 matrices on every core (best of 5),
measured in the same process, so both figures share the machine, the threads and the BLAS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def epoch_flops(config, n_train: int, n_test: int, executed: bool = False) -> float:
    """Matmul flops of one training epoch: the model count, or with ``executed`` what the
    trainer's path does (see the module docstring)."""
    from grok_engine.fast import through_tables

    m, t = config.model, config.task
    D, M, V, H = m.d_model, m.d_mlp, t.d_vocab_out, m.n_heads
    per_row = 2 * D * M + 2 * M * V + 2 * D * V + 6 * H * D
    w_logit = 2 * M * D * V
    train = 3 * (per_row * n_train + w_logit)
    if not executed or not through_tables(m):
        return train + per_row * n_test + w_logit
    test_row = 2 * M * V + 2 * (3 * H + 1) * (M + V)
    table = 2 * ((2 * t.p + 1) * H + 1) * D * (M + V)
    return train + test_row * n_test + table + w_logit


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


def loop_gflops(p: int = 113, epochs: int = 40, warmup: int = 5) -> tuple[float, float, float, str]:
    """(model GFLOP/s, executed GFLOP/s, ms per epoch, path) of Trainer.run at mod_add p,
    frac 0.3, test loss every epoch, in this process."""
    from grok_engine.config import RunConfig
    from grok_engine.train import Trainer

    config = RunConfig().replace(task="mod_add", p=p, frac_train=0.3, eval_every=1,
                                 epochs=warmup + epochs, checkpoint_every=10 ** 6, device="cpu")
    trainer = Trainer(config)
    trainer.run(until_epoch=warmup)
    start = time.perf_counter()
    trainer.run(until_epoch=warmup + epochs)
    per_epoch = (time.perf_counter() - start) / epochs
    n_train, n_test = len(trainer.dataset.train_indices), len(trainer.dataset.test_indices)
    model, executed = (epoch_flops(config, n_train, n_test, executed=e) / per_epoch / 1e9 for e in (False, True))
    return model, executed, 1e3 * per_epoch, "numpy" if trainer.manual else "autograd"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=113)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    from machine import describe

    print(describe())
    peak = matmul_gflops()
    model, executed, ms, path = loop_gflops(args.p, args.epochs)
    print(f"(f) mod_add p={args.p} training loop ({path} path): {ms:.1f} ms/epoch; model flops "
          f"{model:.1f} GFLOP/s ({model / peak:.0%}), executed {executed:.1f} GFLOP/s ({executed / peak:.0%}); "
          f"float32 matmul 2048^3 on all cores: {peak:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
