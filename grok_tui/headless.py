"""Headless commands: ``grok-tui train`` (rich progress bar) and ``grok-tui runs`` (a table).

The trainer reports events; this module is one listener (the progress bar) beside the run
store (which persists checkpoints). Ctrl-C sets the trainer's stop flag: it finishes the
epoch, writes a checkpoint and returns, so the run is kept and can be resumed; a second
Ctrl-C stops at once, keeping the checkpoints written so far. Nothing is created on disk
before every check of the input has passed. Run ids, paths and error texts are printed as
plain text (``rich.text.Text``), never as markup.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from grok_engine.errors import GrokError
from grok_tui.cli import EXIT_INTERRUPTED, train_config_from_args


EXIT_DIVERGED = 3  # training stopped on a non-finite loss or weight (bad input is 2)


def _fmt(x: float, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def open_for_resume(args: argparse.Namespace, store):
    """The run --resume names, its trainer and the epoch to train to; refused (GrokError)
    when a flag would change its config, --run-id is given, or --epochs is below the
    epochs done. A new --epochs is written to the run's config only once all else passed."""
    from grok_engine.memory import check_fits
    from grok_engine.train import pick_device
    from grok_tui.cli import check_writable, resume_conflicts

    run = store.open(args.resume)
    if args.run_id is not None:
        raise GrokError(f"--run-id {args.run_id!r} names a new run: --resume {args.resume} "
                        f"continues run {run.id} under its own id")
    changes = resume_conflicts(args, run.config)
    if changes:
        raise GrokError(f"--resume {run.id} keeps the run's config: {'; '.join(changes)} would "
                        f"change it (leave them out, or start a new run)")
    done = run.epochs_done()
    if args.epochs is not None and args.epochs < done:
        raise GrokError(f"--epochs {args.epochs} is below the {done} epochs run {run.id} has "
                        f"done: give {done} or more")
    check_writable(run.path, f"run {run.id} cannot be trained further")
    if not args.force:
        check_fits(run.config, pick_device(args.device or run.config.train.device))
    trainer = run.trainer(device=args.device)  # reads and checks the split, weights, resume state
    # the lock after every check, so bad input leaves nothing (not even .lock) behind
    lock = run.lock()  # one trainer per run: a second is refused, naming this process
    try:
        if args.epochs is not None and args.epochs != run.config.train.epochs:
            # continuing for more epochs is a change of plan, recorded in the run's config
            run = store.extend_epochs(run, args.epochs)
    except BaseException:
        lock.release()
        raise
    return run, trainer, run.config.train.epochs, lock


def create_for_training(args: argparse.Namespace, store):
    """A new run and its trainer. Everything is checked first (flags, --config, the device,
    the run id, the runs folder) and the trainer built; only then is the folder created, so
    bad input leaves nothing on disk."""
    from grok_engine.memory import check_fits
    from grok_engine.store import check_run_id
    from grok_engine.train import Trainer, pick_device
    from grok_tui.cli import runs_folder

    config = train_config_from_args(args)
    if args.run_id is not None:
        check_run_id(args.run_id)
        if (store.root / args.run_id).exists():
            raise GrokError(f"run {args.run_id!r} already exists in {store.root}")
    runs_folder(args.runs_dir, writing=True)
    device = pick_device(config.train.device)  # refuses an absent device
    if not args.force:
        check_fits(config, device)  # and a run too large for its memory, before any allocation
    trainer = Trainer(config)
    run = store.create(config, run_id=args.run_id)
    return run, trainer, config.train.epochs, run.lock()


def train_headless(args: argparse.Namespace) -> int:
    from grok_engine.store import RunStore

    console = Console(stderr=True)
    store = RunStore(args.runs_dir)
    if args.resume:
        run, trainer, target, lock = open_for_resume(args, store)
    else:
        run, trainer, target, lock = create_for_training(args, store)
    with lock:
        return _train(args, run, trainer, target, console)


def _train(args: argparse.Namespace, run, trainer, target: int, console: Console) -> int:
    """Train ``run`` (its lock held) to epoch ``target`` with the progress bar; returns the
    exit code."""
    import torch

    from grok_engine.store import AsyncWriter
    from grok_engine.train import Progress as TrainProgress

    config = run.config
    t, m = config.task, config.model
    if trainer.device.type == "cpu" and t.n_rows * m.d_model * m.d_mlp < 50_000_000:
        # A small model's ops are microseconds: a second OpenMP thread only spins against the
        # checkpoint writer (measured: p=10, 1000 epochs, 11.9 s with 2 threads, 4.8 s with 1).
        torch.set_num_threads(1)
    stop = threading.Event()
    target_acc = args.stop_at_test_acc
    reached: dict[str, float] = {}
    sigint = _CtrlC(stop)
    previous = signal.signal(signal.SIGINT, sigint)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("epoch {task.completed:>7.0f}/{task.total:.0f}"),
        TextColumn("train {task.fields[train_loss]}  test {task.fields[test_loss]}  "
                   "acc {task.fields[test_acc]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=args.quiet,
        refresh_per_second=4)
    bar = progress.add_task(escape(run.id), total=target, completed=trainer.epoch,
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
        try:
            sigint.may_raise = True
            with progress:
                trainer.run(callback=on_event, stop=stop.is_set, until_epoch=target)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep what is written
            sigint.may_raise = False
            writer.close()
            console.print(Text(f"interrupted: run {run.id} kept up to epoch {run.epochs_done()}"))
            return EXIT_INTERRUPTED
        sigint.may_raise = False
        writer.close()
    finally:  # Ctrl-C stays ours (never a traceback) until the run is on disk
        signal.signal(signal.SIGINT, previous)
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


class _CtrlC:
    """The SIGINT handler of ``grok-tui train``: the first Ctrl-C stops after the epoch (a
    checkpoint is written); a second one stops at once, raising KeyboardInterrupt only while
    the training loop runs (``may_raise``), where it is caught; any later one is ignored
    while the checkpoints already queued go to disk. So no Ctrl-C ever prints a traceback."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.count = 0
        self.may_raise = False

    def __call__(self, signum, frame) -> None:  # noqa: ARG002
        self.count += 1
        if self.count == 1:
            self.stop.set()
        elif self.count == 2 and self.may_raise:
            self.may_raise = False
            raise KeyboardInterrupt


def _isnan(values):
    import numpy as np

    return np.isnan(values)


RUN_COLUMNS = ("id", "task", "p", "epochs", "train acc", "test acc", "test>=99% at")
COMPACT_COLUMNS = ("id", "task", "p", "epochs", "train", "test", "99% at")


def run_cells(s, with_sweep: bool = False) -> list[Text]:
    """One row of the runs table, every cell plain text (run contents are never markup);
    ``with_sweep``: and the sweep it belongs to."""
    sweep = [Text(s.sweep or "-")] if with_sweep else []
    if s.error:
        return [Text(s.id), Text(s.task), Text(str(s.p or "?")), Text("unreadable", style="red"),
                Text("-"), Text("-"), Text("-")] + sweep
    epochs = Text(f"{s.epochs_done}/{s.epochs_planned}")
    if s.diverged_epoch is not None:
        epochs.append(f" diverged at {s.diverged_epoch}", style="red")
    return [Text(s.id), Text(s.task), Text(str(s.p)), epochs,
            Text(_fmt(s.train_acc, ".4f")), Text(_fmt(s.test_acc, ".4f")),
            Text(str(s.grok_epoch) if s.grok_epoch is not None else "-")] + sweep


def _columns(summaries: list, compact: bool) -> tuple[str, ...]:
    """The table's columns; a sweep column only when a run belongs to a sweep."""
    columns = COMPACT_COLUMNS if compact else RUN_COLUMNS
    return columns + ("sweep",) if any(s.sweep for s in summaries) else columns


def runs_table(summaries: list, title: Text, compact: bool = False) -> Table:
    """The runs as a table: boxed with full headers, or ``compact`` (no box, short headers)."""
    from rich import box

    table = Table(title=title, box=None if compact else box.HEAVY_HEAD, pad_edge=not compact)
    columns = _columns(summaries, compact)
    for i, col in enumerate(columns):
        # the id folds (wraps inside the cell) when the terminal is narrow: never cut
        table.add_column(col, justify="left" if i < 2 or col == "sweep" else "right",
                         overflow="fold", no_wrap=0 < i < 7)
    for s in summaries:
        table.add_row(*run_cells(s, "sweep" in columns))
    return table


ID_MIN = 10  # the narrowest the id column folds to before the layout goes to lines


def _fits(console: Console, summaries: list, compact: bool, fold_ids: bool) -> bool:
    """Whether the table fits the terminal without Rich cropping a cell: at its natural
    width, or with ids folded to ID_MIN characters (``fold_ids``)."""
    from rich.measure import Measurement

    if fold_ids:
        summaries = [dataclasses.replace(s, id=s.id[:ID_MIN],
                                         sweep=s.sweep and s.sweep[:ID_MIN]) for s in summaries]
    table = runs_table(summaries, Text(""), compact)
    return Measurement.get(console, console.options.update_width(100_000), table).maximum <= console.width


def print_runs(root) -> int:
    """``grok-tui runs``: every run of ``root`` in the widest layout that fits the terminal
    (the boxed table, a compact one, either with ids folded, else a few lines per run): no
    cell is ever cut. A run that cannot be read is a row marked "unreadable" and one line
    below naming the file and the problem."""
    from grok_engine.store import RunStore

    store = RunStore(root)
    summaries = store.summaries()
    console = Console()
    if not summaries:
        console.print(Text(f"no runs in {store.root} (start one with: grok-tui train)"))
        return 0
    title = Text(f"runs in {store.root}")
    layouts = [(compact, fold) for fold in (False, True) for compact in (False, True)]
    layout = next((c, f) for c, f in layouts + [(None, None)] if c is None or _fits(console, summaries, c, f))
    if layout[0] is not None:
        console.print(runs_table(summaries, title, compact=layout[0]))
    else:  # too narrow for any table: a run per paragraph, wrapped by Rich, never cut
        console.print(title)
        for s in summaries:
            columns = _columns(summaries, compact=True)
            console.print(Text("  ").join(Text(f"{name} ") + cell for name, cell
                                          in zip(columns, run_cells(s, "sweep" in columns))))
    for s in summaries:
        if s.error:  # one line each: the terminal wraps it
            console.print(Text(f"unreadable run {s.id}: {s.error}", style="red"), soft_wrap=True)
    return 0


__all__ = ["train_headless", "print_runs", "GrokError"]
