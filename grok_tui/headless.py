"""Headless commands: ``grok-tui train`` (rich progress bar) and ``grok-tui runs`` (a table).

The trainer reports events; this module is one listener (the progress bar) beside the run
store (which persists checkpoints). Ctrl-C sets the trainer's stop flag: it finishes the
epoch, writes a checkpoint and returns, so the run is kept and can be resumed.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from grok_engine.errors import GrokError


EXIT_DIVERGED = 3  # training stopped on a non-finite loss or weight (bad input is 2)


def _fmt(x: float, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def train_headless(args: argparse.Namespace) -> int:
    from grok_tui.cli import train_config_from_args

    from grok_engine.memory import check_fits
    from grok_engine.store import RunStore
    from grok_engine.train import pick_device

    console = Console(stderr=True)
    store = RunStore(args.runs_dir)
    if args.resume:
        run = store.open(args.resume)
        lock = run.lock()  # one trainer per run: a second is refused, naming this process
        try:
            if not args.force:
                check_fits(run.config, pick_device(run.config.train.device))
            if args.epochs is not None and args.epochs != run.config.train.epochs:
                # continuing for more epochs is a change of plan, recorded in the run's config
                run = store.extend_epochs(run, args.epochs)
        except GrokError:
            lock.release()
            raise
    else:
        config = train_config_from_args(args)
        device = pick_device(config.train.device)  # refuse an absent device before creating the run
        if not args.force:
            check_fits(config, device)  # and a run too large for its memory
        run = store.create(config, run_id=args.run_id)
        lock = run.lock()
    with lock:
        return _train(args, run, console)


def _train(args: argparse.Namespace, run, console: Console) -> int:
    """Train ``run`` (its lock held) with the progress bar; returns the exit code."""
    import torch

    from grok_engine.store import AsyncWriter
    from grok_engine.train import Progress as TrainProgress

    trainer = run.trainer()
    config = run.config
    t, m = config.task, config.model
    if trainer.device.type == "cpu" and t.n_rows * m.d_model * m.d_mlp < 50_000_000:
        # A small model's ops are microseconds: a second OpenMP thread only spins against the
        # checkpoint writer (measured: p=10, 1000 epochs, 11.9 s with 2 threads, 4.8 s with 1).
        torch.set_num_threads(1)
    stop = threading.Event()
    target_acc = args.stop_at_test_acc
    reached: dict[str, float] = {}

    def on_sigint(signum, frame):  # noqa: ARG001
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("epoch {task.completed:>7.0f}/{task.total:.0f}"),
        TextColumn("train {task.fields[train_loss]}  test {task.fields[test_loss]}  "
                   "acc {task.fields[test_acc]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=args.quiet,
        refresh_per_second=4)
    bar = progress.add_task(run.id, total=config.train.epochs, completed=trainer.epoch,
                            train_loss="-", test_loss="-", test_acc="-")
    started = time.perf_counter()

    writer = AsyncWriter(run)

    def on_event(event) -> None:
        writer(event)  # checkpoints go to disk on a background thread
        if isinstance(event, TrainProgress):
            m = event.metrics
            test = m.test_acc[~_isnan(m.test_acc)]
            test_loss = m.test_loss[~_isnan(m.test_loss)]
            progress.update(bar, completed=event.epoch, train_loss=_fmt(float(m.train_loss[-1])),
                            test_loss=_fmt(float(test_loss[-1])) if len(test_loss) else "-",
                            test_acc=_fmt(float(test[-1]), ".1%") if len(test) else "-")
            if target_acc is not None and "epoch" not in reached:
                hits = (m.test_acc >= target_acc).nonzero()[0]
                if len(hits):
                    reached["epoch"] = int(m.epoch[hits[0]])
                    reached["seconds"] = time.perf_counter() - started
                    stop.set()

    try:
        with progress:
            trainer.run(callback=on_event, stop=stop.is_set)
    except KeyboardInterrupt:
        writer.close()
        console.print(f"interrupted: run {run.id} kept up to epoch {run.epochs_done()}")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    writer.close()
    s = run.summary()
    elapsed = time.perf_counter() - started
    if trainer.diverged is not None:
        d = trainer.diverged
        print(f"diverged: run {run.id} at epoch {d.epoch} ({d.reason}); checkpoints kept up to "
              f"epoch {s.epochs_done}  {elapsed:.1f} s  -> {run.path}")
        return EXIT_DIVERGED
    status = "stopped" if stop.is_set() and "epoch" not in reached else "done"
    print(f"{status}: run {run.id}  epochs {s.epochs_done}  train acc {_fmt(s.train_acc, '.4f')}  "
          f"test acc {_fmt(s.test_acc, '.4f')}  test>=99% at epoch {s.grok_epoch or '-'}  "
          f"{elapsed:.1f} s  -> {run.path}")
    if target_acc is not None:
        if "epoch" in reached:
            print(f"reached test acc >= {target_acc} at epoch {reached['epoch']} "
                  f"after {reached['seconds']:.1f} s of training")
        else:
            print(f"test acc {target_acc} not reached in {s.epochs_done} epochs")
    return 0


def _isnan(values):
    import numpy as np

    return np.isnan(values)


def print_runs(runs_dir: str | None) -> int:
    from grok_engine.store import RunStore

    store = RunStore(runs_dir)
    summaries = store.summaries()
    console = Console()
    if not summaries:
        console.print(f"no runs in {store.root} (start one with: grok-tui train)")
        return 0
    table = Table(title=f"runs in {store.root}")
    table.add_column("id", overflow="fold", min_width=12)  # ids are long: wrap, never cut
    for col in ("task", "p", "epochs", "train acc", "test acc", "test>=99% at"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for s in summaries:
        if s.error:
            table.add_row(s.id, s.task, str(s.p or "?"), "-", "-", "-", f"[red]{s.error}[/red]")
            continue
        table.add_row(s.id, s.task, str(s.p), f"{s.epochs_done}/{s.epochs_planned}",
                      _fmt(s.train_acc, ".4f"), _fmt(s.test_acc, ".4f"),
                      str(s.grok_epoch) if s.grok_epoch is not None else "-")
    console.print(table)
    return 0


__all__ = ["train_headless", "print_runs", "GrokError"]
