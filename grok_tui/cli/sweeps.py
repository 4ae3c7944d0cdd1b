"""``grok-tui sweeps [--runs-dir DIR]``: a table of the sweeps in the runs folder."""

from __future__ import annotations

import argparse

from grok_tui.cli.args import add_runs_dir

DESCRIPTION = "List sweeps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    from grok_tui.cli.sweep import list_sweeps

    return list_sweeps(args.runs_dir)
