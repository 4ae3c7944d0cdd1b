"""``grok-tui sweep show ID [--csv FILE] [--runs-dir DIR]``: one row per member of a sweep.

Each row (:func:`grok_engine.sweep.summary.run_figures`): the member's grid values, its
status and phase (Liu et al.'s four classes), the train and test 99% epochs and the
grokking delay, the final accuracies and weight norm (sum of squared weights) and, for the
cyclic tasks, the key frequencies and the final restricted loss. The progress figures come
from the progress study (its cache beside each run; computed and cached when missing).
``--csv FILE`` writes the same rows (every column, raw values) atomically.

:func:`show_sweep` takes the parsed arguments (``id``, ``csv``, ``runs_dir``) and returns
the exit code; an unknown sweep or an unwritable CSV path raises GrokError (the CLI prints
it as one line, exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table as RichTable
from rich.text import Text

from grok_tui.cli.args import add_runs_dir

DESCRIPTION = "One row per member of a sweep: grid values, phase, 99% epochs, figures."

SHOWN = ("status", "phase", "train_99", "test_99", "delay", "train_acc", "test_acc", "weight_norm",
         "key_frequencies", "restricted_loss")
HEADERS = {"train_99": "train99", "test_99": "test99", "train_acc": "train acc", "test_acc": "test acc",
           "weight_norm": "|w|²", "key_frequencies": "key freqs", "restricted_loss": "restricted"}
CYCLIC_ONLY = ("key_frequencies", "restricted_loss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="the sweep's id")
    parser.add_argument("--csv", metavar="FILE", default=None, help="write the rows to FILE as CSV")
    add_runs_dir(parser)


def cell(value: Any) -> str:
    """A figure as text: '-' for missing, 4 significant digits, accuracies as %."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show_sweep(args: argparse.Namespace) -> int:
    from grok_engine.export import write_csv
    from grok_engine.store import RunStore
    from grok_engine.sweep.store import SweepStore
    from grok_engine.sweep.summary import CYCLIC_TASKS, figures_table, sweep_figures

    store = RunStore(args.runs_dir) if args.runs_dir is not None else RunStore()
    sweep = SweepStore(store.root).open(args.id)
    figures = sweep_figures(store, sweep, compute=True)
    flags = [a["flag"] for a in sweep.axes]
    table = figures_table(figures, flags)
    if args.csv:
        path = write_csv(table, args.csv)
    cyclic = sweep.base_config().task.task in CYCLIC_TASKS or any(
        f.config.get("task") in CYCLIC_TASKS for f in figures)
    columns = ["run", *flags, *(c for c in SHOWN if cyclic or c not in CYCLIC_ONLY)]
    out = RichTable(title=Text(f"sweep {sweep.id}: {len(figures)} members in {store.root}"),
                    box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name in columns:
        out.add_column(Text(HEADERS.get(name, name)), overflow="fold",
                       justify="left" if name in ("run", "status", "phase", "key_frequencies") else "right")
    for row in table.rows():
        by_name = dict(zip(table.column_names, row))
        out.add_row(*[Text(cell(by_name[c])) for c in columns])
    console = Console()
    if Measurement.get(console, console.options.update_width(100_000), out).maximum <= console.width:
        console.print(out)
    else:  # too narrow for the table: a member per paragraph, wrapped by Rich, never cut
        console.print(out.title)
        for row in table.rows():
            by_name = dict(zip(table.column_names, row))
            console.print(Text("  ").join(Text(f"{HEADERS.get(c, c)} {cell(by_name[c])}") for c in columns))
    for f in figures:
        if f.error:
            console.print(Text(f"unreadable member {f.run_id}: {f.error}", style="red"), soft_wrap=True)
    if args.csv:
        console.print(Text(f"wrote {path}"))
    return 0


main = show_sweep  # the subcommand's entry, as the dispatcher calls it
