"""``grok-tui runs``: a table of the runs in the runs folder, as wide as the terminal allows
(no cell is ever cut); a run that cannot be read is a row marked "unreadable" and a line
naming the file and the problem. Every cell is plain text: run contents are never markup."""

from __future__ import annotations

import argparse
import dataclasses

from rich.console import Console
from rich.text import Text
from rich.table import Table

from grok_tui.cli.args import add_runs_dir, runs_folder
from grok_tui.format import number as fmt

DESCRIPTION = "List runs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    return print_runs(runs_folder(args.runs_dir))


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
            Text(fmt(s.train_acc, ".4f")), Text(fmt(s.test_acc, ".4f")),
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
        columns = _columns(summaries, compact=True)
        for s in summaries:
            console.print(Text("  ").join(Text(f"{name} ") + cell for name, cell
                                          in zip(columns, run_cells(s, "sweep" in columns))))
    for s in summaries:
        if s.error:  # one line each: the terminal wraps it
            console.print(Text(f"unreadable run {s.id}: {s.error}", style="red"), soft_wrap=True)
    return 0
