"""``grok-tui import FILE.pth``: a notebook save file becomes a run (grok_engine.notebook_import).
The module is ``import_`` because ``import`` is Python's keyword."""

from __future__ import annotations

import argparse

from grok_tui.cli.args import add_runs_dir, nonempty, runs_folder

DESCRIPTION = "Import a notebook .pth save file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.pth", type=nonempty)
    parser.add_argument("--run-id", default=None, type=nonempty)
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    from grok_engine.notebook_import import import_notebook
    from grok_engine.store import RunStore

    store = RunStore(runs_folder(args.runs_dir, writing=True))
    run = import_notebook(args.file, store, run_id=args.run_id)
    s = run.summary()
    print(f"imported {args.file} as run {run.id} ({s.task} p={s.p}, {len(run.checkpoint_epochs())} "
          f"checkpoints, {s.epochs_done} epochs) in {run.path.parent}")
    return 0
