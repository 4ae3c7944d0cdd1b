"""The ``grok-tui`` command.

    grok-tui [RUN] [--runs-dir DIR]          the Textual app (a run, or the run picker)
    grok-tui train [flags]                   headless training with a progress bar
    grok-tui runs [--runs-dir DIR]           a table of runs
    grok-tui import FILE.pth [--runs-dir]    a notebook save file -> a run
    grok-tui export RUN [...]                studies of a checkpoint -> CSV

Bad input: one line on stderr naming the value and what is allowed, exit code 2 (also a
run too large for the memory, without ``--force``, and a run another process trains).
``train`` exits 3 when training stopped on a non-finite loss or weight (diverged).
Heavy imports (torch, the engine, textual) happen inside the subcommand that needs them,
so ``grok-tui --help`` and the app's first paint stay fast.
"""

from __future__ import annotations

import argparse

from grok_tui.cli.args import add_runs_dir

DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default=None, metavar="RUN", help="a run id to open")
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    from grok_tui.app import run_app

    return run_app(args.run, args.runs_dir)
