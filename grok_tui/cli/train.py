"""``grok-tui train``: train a run headless, with a progress bar.

The trainer reports events; this module is one listener (the progress bar) beside the run
store (which persists checkpoints). Ctrl-C sets the trainer's stop flag: it finishes the
epoch, writes a checkpoint and returns, so the run is kept and can be resumed; a second
Ctrl-C stops at once, keeping the checkpoints written so far. Nothing is created on disk
before every check of the input has passed. Run ids, paths and error texts are printed as
plain text (``rich.text.Text``), never as markup. Exit code 3: training stopped on a
non-finite loss or weight (diverged).

``TRAIN_FLAGS`` and :func:`train_config_from_args` are the train flags' one definition
(a sweep's axes are these flags).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

from grok_engine.errors import GrokError
from grok_tui.cli.args import (EXIT_DIVERGED, EXIT_INTERRUPTED, UsageError, accuracy, add_runs_dir,
                               check_writable, integer, nonempty, number, runs_folder)
from grok_tui.format import number as fmt

DESCRIPTION = "Train a run headless."

# flag -> config field (flat name); type
TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--task", "task", str, "add | mod_add | mod_sub | mod_mul | mod_div | poly"),
    ("--p", "p", integer, "modulus / number of input tokens"),
    ("--frac-train", "frac_train", number, "fraction of pairs in the train split, in (0, 1)"),
    ("--data-seed", "data_seed", integer, "seed of the train/test split"),
    ("--seed", "seed", integer, "seed of the weight initialisation"),
    ("--epochs", "epochs", integer, "epochs to train (in total)"),
    ("--checkpoint-every", "checkpoint_every", integer, "epochs between checkpoints"),
    ("--eval-every", "eval_every", integer, "epochs between test evaluations (1 = every epoch)"),
    ("--lr", "lr", number, "AdamW learning rate"),
    ("--weight-decay", "weight_decay", number, "AdamW weight decay"),
    ("--grokfast-alpha", "grokfast_alpha", number, "Grokfast EMA decay"),
    ("--grokfast-lamb", "grokfast_lamb", number, "Grokfast amplification"),
    ("--device", "device", str, "auto | cpu | cuda | mps"),
    ("--n-layers", "n_layers", integer, "transformer layers"),
    ("--n-heads", "n_heads", integer, "attention heads"),
    ("--d-model", "d_model", integer, "residual width"),
    ("--d-head", "d_head", integer, "head width"),
    ("--d-mlp", "d_mlp", integer, "MLP width"),
    ("--act-fn", "act_fn", str, "relu | gelu"),
    ("--normalization", "normalization", str, "none | LN"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The train flags (TRAIN_FLAGS), then --grokfast, --preset, --config, --resume, ..."""
    for flag, dest, kind, help_text in TRAIN_FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)
    parser.add_argument("--grokfast", dest="grokfast", action="store_true", default=None,
                        help="Grokfast EMA gradient filter (Lee et al. 2024)")
    parser.add_argument("--preset", default=None, help="notebook | fast (training settings)")
    parser.add_argument("--config", default=None, type=nonempty,
                        help="a TOML file with [task] [model] [train]")
    parser.add_argument("--resume", metavar="RUN", default=None, type=nonempty,
                        help="continue RUN from its last checkpoint (up to --epochs; flags that "
                             "would change its config are refused)")
    parser.add_argument("--run-id", default=None, type=nonempty, help="name of the new run's folder")
    parser.add_argument("--stop-at-test-acc", type=accuracy, default=None, metavar="ACC",
                        help="stop once test accuracy reaches ACC, in (0, 1] (e.g. 0.99)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="train even when the memory estimate exceeds what is available")
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    """Train a new run, or the one --resume names; the exit code."""
    from grok_engine.store import RunStore

    store = RunStore(args.runs_dir)
    if args.resume:
        run, trainer, target, lock = open_for_resume(args, store)
    else:
        run, trainer, target, lock = create_for_training(args, store)
    with lock:
        return _train(args, run, trainer, target)


def _load_toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from grok_engine.errors import describe_os_error

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"grok-tui: --config {path!r}: {describe_os_error(exc)}") from None
    except ValueError as exc:  # TOMLDecodeError, a binary file (UnicodeDecodeError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UsageError(f"grok-tui: --config {path!r} is not valid TOML ({first})") from None


def _config_file(path: str, raw: dict | None = None):
    """The RunConfig of a TOML file (``raw``: its parsed tables, when already read), its
    errors prefixed with the file's name."""
    from grok_engine.config import RunConfig
    from grok_engine.errors import GrokError

    try:
        return RunConfig.from_dict(_load_toml(path) if raw is None else raw)
    except GrokError as exc:
        raise GrokError(f"--config {path!r}: {exc}") from None


def train_config_from_args(args: argparse.Namespace):
    """config file (or defaults) -> preset -> explicit flags."""
    from grok_engine.config import RunConfig, apply_preset

    config = _config_file(args.config) if args.config else RunConfig()
    if args.preset:
        config = apply_preset(config, args.preset)
    overrides = {dest: value for dest, (_source, value) in flag_values(args).items()}
    return config.replace(**overrides) if overrides else config


def flag_values(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """config field -> (the flag as typed, its value), for the config flags given."""
    given = {dest: (f"{flag} {getattr(args, dest)}", getattr(args, dest))
             for flag, dest, _k, _h in TRAIN_FLAGS if getattr(args, dest) is not None}
    if args.grokfast:
        given["grokfast"] = ("--grokfast", True)
    return given


# Flags that --resume takes without changing what the run is: how far to train, where.
RESUME_FREE = ("epochs", "device")


def resume_conflicts(args: argparse.Namespace, config) -> list[str]:
    """What --config, --preset and the flags ask for that differs from the run's ``config``,
    one "FLAG (the run has FIELD=VALUE)" each; flags equal to the stored value pass."""
    from grok_engine.config import PRESETS, apply_preset

    stored = {k: v for section in config.to_dict().values() for k, v in section.items()}
    asked: dict[str, tuple[str, Any]] = {}
    if args.config:
        raw = _load_toml(args.config)
        from_file = _config_file(args.config, raw).to_dict()
        for name, section in raw.items():
            for key in section if isinstance(section, dict) else ():
                asked[key] = (f"--config {args.config} ({name}.{key})", from_file[name][key])
    if args.preset:
        apply_preset(config, args.preset)  # refuses an unknown preset
        asked.update({k: (f"--preset {args.preset} ({k})", v) for k, v in PRESETS[args.preset].items()})
    asked.update(flag_values(args))
    return [f"{source} (the run has {key}={stored[key]!r})" for key, (source, value) in asked.items()
            if key not in RESUME_FREE and value != stored[key]]


def open_for_resume(args: argparse.Namespace, store):
    """The run --resume names, its trainer and the epoch to train to; refused (GrokError)
    when a flag would change its config, --run-id is given, or --epochs is below the
    epochs done. A new --epochs is written to the run's config only once all else passed."""
    from grok_engine.memory import check_fits
    from grok_engine.session.training import extend_plan
    from grok_engine.train import pick_device

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
        # continuing for more epochs is a change of plan, recorded in the run's config (the
        # one place that does it, for this command and the app's RunSession)
        run = extend_plan(store, run, args.epochs)
    except BaseException:
        lock.release()
        raise
    return run, trainer, run.config.train.epochs, lock


def create_for_training(args: argparse.Namespace, store):
    """A new run and its trainer. Everything is checked first (flags, --config, the device,
    the run id, the runs folder) and the trainer built; only then is the folder created, so
    bad input leaves nothing on disk."""
    from grok_engine.memory import check_fits
    from grok_engine.paths import check_run_id
    from grok_engine.train import Trainer, pick_device

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


def _train(args: argparse.Namespace, run, trainer, target: int) -> int:
    """Train ``run`` (its lock held) to epoch ``target`` with the progress bar; returns the
    exit code."""
    import numpy as np
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    from grok_engine import runtime
    from grok_engine.store import AsyncWriter
    from grok_engine.train import Progress as TrainProgress

    runtime.configure("train", config=run.config, device=trainer.device)
    console = Console(stderr=True)
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
            test = m.test_acc[~np.isnan(m.test_acc)]
            test_loss = m.test_loss[~np.isnan(m.test_loss)]
            progress.update(bar, completed=event.epoch, train_loss=fmt(float(m.train_loss[-1])),
                            test_loss=fmt(float(test_loss[-1])) if len(test_loss) else "-",
                            test_acc=fmt(float(test[-1]), ".1%") if len(test) else "-")
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
    print(f"{status}: run {run.id}  epochs {s.epochs_done}  train acc {fmt(s.train_acc, '.4f')}  "
          f"test acc {fmt(s.test_acc, '.4f')}  test>=99% at epoch {s.grok_epoch or '-'}  "
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


