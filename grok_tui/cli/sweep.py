"""``grok-tui sweep`` (train a grid of runs) and ``grok-tui sweeps`` (list the sweeps).

    grok-tui sweep [any train flag] --grid FLAG=V1,V2,... [--grid ...] [--sweep-id ID]
                   [--executor local|ray] [--ray-address ADDR] [--resume ID] [--runs-dir DIR]
                   [--yes] [--quiet]

The train flags give every member's shared settings; each ``--grid`` (and the ``[sweep]``
table of ``--config``) adds an axis; the members are the cross product. Everything is
checked (flags, grid, device, memory, ids, the runs folder) before anything is written.
Ctrl-C asks every pack to checkpoint and return: the sweep is kept and ``--resume ID``
continues it, each member from its own last checkpoint. Ids, paths and errors are
printed as plain text (``rich.text.Text``), never as markup.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

from grok_engine.errors import GrokError

DESCRIPTION = "Train a grid of runs."
EXIT_FAILED = 1  # a pack could not train a member (its state says why); the rest is kept


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every train flag that defines a run, then the sweep's own flags."""
    from grok_tui.cli.args import accuracy, add_runs_dir, nonempty
    from grok_tui.cli.train import TRAIN_FLAGS

    for flag, dest, kind, help_text in TRAIN_FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=f"every member: {help_text}")
    parser.add_argument("--grokfast", dest="grokfast", action="store_true", default=None,
                        help="every member: the Grokfast EMA gradient filter")
    parser.add_argument("--preset", default=None, help="notebook | fast (training settings)")
    parser.add_argument("--config", default=None, type=nonempty,
                        help="a TOML file with [task] [model] [train] and a [sweep] table of axes")
    parser.add_argument("--grid", action="append", default=[], metavar="FLAG=V1,V2,...",
                        help="an axis: a train flag without dashes and its values (or "
                             "log:START:STOP:N); several --grid make the cross product")
    parser.add_argument("--stop-at-test-acc", type=accuracy, default=None, metavar="ACC",
                        help="a member is done once its test accuracy reaches ACC, in (0, 1]")
    parser.add_argument("--sweep-id", default=None, type=nonempty, help="name of the new sweep")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: parallel processes here; ray: Ray tasks")
    parser.add_argument("--ray-address", default=None, type=nonempty,
                        help="the Ray cluster (default: a local Ray started for the sweep)")
    parser.add_argument("--resume", metavar="ID", default=None, type=nonempty,
                        help="continue sweep ID: every unfinished member from its last checkpoint")
    parser.add_argument("--yes", action="store_true",
                        help="train a grid of more than 10,000 members")
    parser.add_argument("--force", action="store_true",
                        help="train even when the memory estimate exceeds what is available")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runs_dir(parser)


def build_parser():
    from grok_tui.cli.args import Parser

    parser = Parser(prog="grok-tui sweep", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def flag_table() -> dict:
    """The grid's flags: every option of ``grok-tui train``'s parser that sets a RunConfig
    field, with the very function that parser types it with."""
    from grok_engine.config import section_of
    from grok_engine.sweep.grid import FlagSpec
    from grok_tui.cli import train as train_cmd
    from grok_tui.cli.args import Parser

    flags = {}
    train_parser = Parser(prog="grok-tui train")
    train_cmd.add_arguments(train_parser)
    for action in train_parser._actions:
        if not action.option_strings:
            continue
        try:
            section_of(action.dest)
        except GrokError:
            continue  # --resume, --run-id, --quiet ...: not a run's setting
        name = action.option_strings[0].lstrip("-")
        is_bool = action.type is None and action.const is True  # store_true (--grokfast)
        flags[name] = FlagSpec(name, action.dest, action.type or str, is_bool)
    return flags


def base_and_axes(args: argparse.Namespace, flags: dict):
    """The shared config (--config's [task] [model] [train], then --preset, then the
    flags) and the axes (--config's [sweep], then each --grid)."""
    from grok_engine.config import RunConfig, apply_preset
    from grok_engine.sweep.grid import check_axes, parse_grid_arg, parse_sweep_table
    from grok_tui.cli.train import _config_file, _load_toml, flag_values

    axes = []
    config = RunConfig()
    if args.config:
        raw = _load_toml(args.config)
        table = raw.pop("sweep", None)
        config = _config_file(args.config, raw)
        if table is not None:
            axes += parse_sweep_table(table, flags, args.config)
    if args.preset:
        config = apply_preset(config, args.preset)
    given = flag_values(args)
    if given:
        config = config.replace(**{dest: value for dest, (_source, value) in given.items()})
    axes += [parse_grid_arg(text, flags) for text in args.grid]
    check_axes(axes, fixed=[dest.replace("_", "-") for dest in given])
    return config, axes


def check_resources(members: list, device_name: str, force: bool) -> None:
    """The device exists, and (unless ``force``) each distinct shape fits its memory."""
    from grok_engine.memory import check_fits
    from grok_engine.sweep.stacked import shape_key
    from grok_engine.train import pick_device

    device = pick_device(device_name)
    if force:
        return
    seen = set()
    for member in members:
        key = shape_key(member.config)
        if key not in seen:
            seen.add(key)
            check_fits(member.config, device)


RESUME_KEEPS = ("grid", "config", "preset", "sweep_id", "stop_at_test_acc")


def check_resume_args(args: argparse.Namespace) -> None:
    """--resume continues a sweep as it was made: its grid and settings are refused."""
    from grok_tui.cli.train import flag_values

    given = [f"--{name.replace('_', '-')}" for name in RESUME_KEEPS if getattr(args, name)]
    given += [source.split()[0] for dest, (source, _v) in flag_values(args).items() if dest != "device"]
    if given:
        raise GrokError(f"--resume {args.resume} keeps the sweep's grid and settings: leave out "
                        f"{', '.join(given)}")


def create_sweep(args: argparse.Namespace, store):
    """A new sweep from the flags; every check first, then sweep.json and the members."""
    from grok_engine.sweep.grid import members as grid_members
    from grok_tui.cli.args import runs_folder

    flags = flag_table()
    base, axes = base_and_axes(args, flags)
    members = grid_members(base, axes, flags, allow_large=args.yes)
    if args.sweep_id is not None:
        store.check_new_id(args.sweep_id, len(members))
    runs_folder(args.runs_dir, writing=True)
    check_resources(members, base.train.device, args.force)
    extra = {} if args.stop_at_test_acc is None else {"stop_at_test_acc": args.stop_at_test_acc}
    return store.create(base, axes, members, sweep_id=args.sweep_id, executor=args.executor,
                        extra=extra)


def main(args: argparse.Namespace) -> int:
    if args.executor == "local":  # its workers' fork server imports torch beside our import
        from grok_engine.sweep import workers

        workers.start_early()
    from grok_engine.sweep.store import SweepStore
    from grok_tui.cli.args import runs_folder

    store = SweepStore(runs_folder(args.runs_dir))
    if args.ray_address and args.executor != "ray":
        raise GrokError(f"--ray-address {args.ray_address} needs --executor ray")
    if args.resume:
        check_resume_args(args)
        sweep = store.open(args.resume)
        device = args.device or sweep.base_config().train.device
    else:
        sweep = create_sweep(args, store)
        device = sweep.base_config().train.device
    return _train(args, store, sweep, device)


def _train(args: argparse.Namespace, store, sweep, device: str) -> int:
    from rich.console import Console
    from rich.text import Text

    from grok_engine.sweep.executor import execute
    from grok_tui.cli.args import EXIT_INTERRUPTED

    console = Console(stderr=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    bar = SweepBar(store, sweep, console, quiet=args.quiet)

    def show_packs(packs) -> None:
        sizes = ", ".join(str(len(p.run_ids)) for p in packs) or "none"
        console.print(Text(f"sweep {sweep.id}: {len(sweep.members)} members, "
                           f"{len(packs)} packs to train (sizes {sizes}), executor {args.executor}"))

    try:
        with bar:
            _packs, states = execute(store, sweep, args.executor, device=device,
                                     on_progress=bar.update, stop=stop.is_set,
                                     ray_address=args.ray_address, on_packs=show_packs)
    finally:
        signal.signal(signal.SIGINT, previous)
    statuses = store.statuses(sweep)
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"sweep {sweep.id}: {shown}  {bar.rate_text()}  -> {store.root / sweep.id}")
    failed = {rid: s for rid, s in states.items() if s.startswith("failed")}
    for rid, state in failed.items():
        console.print(Text(f"member {rid} {state}", style="red"), soft_wrap=True)
    if stop.is_set() or failed:
        console.print(Text(f"kept: continue with grok-tui sweep --resume {sweep.id}"))
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else 0


class SweepBar:
    """The progress bar: members done/total, model-epochs (every member's epochs added up)
    with their rate, and the ETA. Fed by ``update(run_id, epoch, target)``."""

    def __init__(self, store, sweep, console, quiet: bool = False):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.epochs: dict[str, int] = {}
        self.targets: dict[str, int] = {}
        for index, run_id in enumerate(sweep.run_ids):
            self.targets[run_id] = sweep.member_config(index).train.epochs
            try:
                self.epochs[run_id] = store.runs.open(run_id).epochs_done()
            except GrokError:
                self.epochs[run_id] = 0
        self.start_total = sum(self.epochs.values())
        self.started = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(),
            TextColumn("members {task.fields[done]}/{task.fields[members]}"),
            TextColumn("{task.fields[rate]} model-epochs/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, disable=quiet, refresh_per_second=4)
        self.task = self.progress.add_task("sweep", total=sum(self.targets.values()),
                                           completed=self.start_total, done=self._done(),
                                           members=len(sweep.run_ids), rate="-")

    def _done(self) -> int:
        return sum(self.epochs[r] >= self.targets[r] for r in self.targets)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return (sum(self.epochs.values()) - self.start_total) / elapsed if elapsed > 0 else 0.0

    def rate_text(self) -> str:
        return f"{self.rate():.0f} model-epochs/s"

    def update(self, run_id: str, epoch: int, target: int) -> None:
        self.epochs[run_id] = max(self.epochs.get(run_id, 0), epoch)
        self.targets[run_id] = target
        self.progress.update(self.task, completed=sum(self.epochs.values()), done=self._done(),
                             rate=f"{self.rate():.0f}")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.progress.__exit__(*exc_info)


# -- grok-tui sweeps -----------------------------------------------------------------------
SWEEP_COLUMNS = ("id", "members", "done", "partial", "new", "diverged", "axes", "created")


def sweep_row(store, sweep) -> list:
    """One row of ``grok-tui sweeps``: plain text cells (sweep contents are never markup)."""
    from rich.text import Text

    from grok_engine.sweep.store import DIVERGED, DONE, NOT_STARTED, PARTIAL

    statuses = store.statuses(sweep)
    axes = " ".join(f"{a.get('flag')}({len(a.get('values', []))})" for a in sweep.axes)
    return [Text(sweep.id), Text(str(len(statuses)))] + [
        Text(str(statuses.count(s))) for s in (DONE, PARTIAL, NOT_STARTED, DIVERGED)
    ] + [Text(axes), Text(sweep.created[:10])]


def list_sweeps(runs_dir: str | None) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from grok_engine.sweep.store import SweepStore
    from grok_tui.cli.args import runs_folder

    store = SweepStore(runs_folder(runs_dir))
    console = Console()
    ids = store.sweep_ids()
    if not ids:
        console.print(Text(f"no sweeps in {store.root} (start one with: grok-tui sweep --grid ...)"))
        return 0
    rows, problems = [], []
    for sweep_id in ids:
        try:
            rows.append(sweep_row(store, store.open(sweep_id)))
        except GrokError as exc:
            rows.append([Text(sweep_id), Text("unreadable", style="red"), *[Text("-")] * 6])
            problems.append(str(exc))
    # the axes wrap between axes, never inside one ("weight-decay(2)" whole)
    widest_axis = max((len(word) for row in rows for word in row[6].plain.split()), default=4)
    from rich.measure import Measurement

    def table_of(compact: bool) -> Table:
        table = Table(title=Text(f"sweeps in {store.root}"), box=None if compact else box.HEAVY_HEAD,
                      pad_edge=not compact)
        for i, col in enumerate(SWEEP_COLUMNS):
            table.add_column(col, justify="right" if 0 < i < 6 else "left", overflow="fold",
                             no_wrap=0 < i < 6 or col == "created",
                             min_width=min(widest_axis, 24) if col == "axes" else None)
        for row in rows:
            table.add_row(*row)
        return table

    def fits(table: Table) -> bool:
        return Measurement.get(console, console.options.update_width(100_000), table).minimum <= console.width

    table = next((t for t in (table_of(False), table_of(True)) if fits(t)), None)
    if table is not None:  # the boxed table, else one without box and edges
        console.print(table)
    else:  # too narrow for the table: a sweep per paragraph, wrapped by Rich, never cut
        console.print(Text(f"sweeps in {store.root}"))
        for row in rows:
            console.print(Text("  ").join(Text(f"{name} ") + cell for name, cell in zip(SWEEP_COLUMNS, row)))
    for problem in problems:
        console.print(Text(f"unreadable sweep: {problem}", style="red"), soft_wrap=True)
    return 0
