"""The ``grok-tui`` command line: one module per subcommand, dispatched from here.

    grok_tui/cli/
        __init__.py   main(argv), entry() (the console script), COMMANDS: the registry
        __main__.py   ``python -m grok_tui.cli``
        args.py       shared: the one-line-error Parser, exit codes, argument types, the
                      runs folder and its checks
        app.py        ``grok-tui [RUN]``: the Textual app (its docstring is ``--help``)
        train.py      ``grok-tui train`` (TRAIN_FLAGS: the train flags' one definition)
        runs.py       ``grok-tui runs``
        import_.py    ``grok-tui import``
        export.py     ``grok-tui export``
        sweep.py      ``grok-tui sweep``: a grid of runs, trained in stacked packs
        sweeps.py     ``grok-tui sweeps``
        sweep_show.py ``grok-tui sweep show ID``: a row of figures per member
        compare.py    ``grok-tui compare RUN RUN [...]``: the app's comparison screen

A subcommand is a module with ``DESCRIPTION`` (optional: its docstring's first line),
``add_arguments(parser)`` and ``main(args) -> int``, named in COMMANDS. Imports go one
way: this module imports a subcommand only when it runs, and a subcommand imports
``args`` (never this package's ``__init__``), so no module imports one that imports it
(tests/cli/test_layout.py walks them). A GrokError from a subcommand is one line on stderr,
exit code 2; an ImportError is a bug and is never turned into a message.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import ModuleType
from typing import Sequence

from grok_tui.cli.args import EXIT_INTERRUPTED, EXIT_USAGE, Parser, UsageError, fail

# subcommand -> its module. The app's launch (no subcommand) is APP_MODULE.
COMMANDS = {
    "train": "grok_tui.cli.train",
    "runs": "grok_tui.cli.runs",
    "import": "grok_tui.cli.import_",
    "export": "grok_tui.cli.export",
    "sweep": "grok_tui.cli.sweep",
    "sweeps": "grok_tui.cli.sweeps",
    "sweep show": "grok_tui.cli.sweep_show",  # two words: "sweep" then "show"
    "compare": "grok_tui.cli.compare",
}
# commands that run the app (the terminal is the app's): Ctrl-C is not ignored after them
APP_COMMANDS = ("compare",)
APP_MODULE = "grok_tui.cli.app"


def build_parser(name: str | None) -> tuple[Parser, ModuleType]:
    """The parser of subcommand ``name`` (None: the app) and the subcommand's module."""
    module = importlib.import_module(APP_MODULE if name is None else COMMANDS[name])
    doc = (module.__doc__ or "").strip().splitlines()
    description = getattr(module, "DESCRIPTION", doc[0] if doc else None)
    if name is None:
        parser = Parser(prog="grok-tui", description=description,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    else:
        parser = Parser(prog=f"grok-tui {name}", description=description)
    module.add_arguments(parser)
    return parser, module


def run_command(name: str | None, argv: Sequence[str]) -> int:
    """Parse ``argv`` for subcommand ``name`` (None: the app) and run it."""
    from grok_engine.errors import GrokError

    parser, module = build_parser(name)
    args = parser.parse_args(argv)
    try:
        return module.main(args)
    except GrokError as exc:
        return fail(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) >= 2 and " ".join(argv[:2]) in COMMANDS:
            return run_command(" ".join(argv[:2]), argv[2:])
        if argv and argv[0] in COMMANDS:
            return run_command(argv[0], argv[1:])
        return run_command(None, argv)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before a command took it over (importing torch)
        print("grok-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `grok-tui runs | head -1`: the reader has what it wanted
        return 0
    except OSError as exc:  # the files or folders given: one line, never a traceback
        from grok_engine.errors import describe_os_error

        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{describe_os_error(exc)}")


def entry() -> None:
    """Console-script entry point."""
    headless = len(sys.argv) > 1 and sys.argv[1] in COMMANDS and sys.argv[1] not in APP_COMMANDS
    try:
        code = main()
        if headless:  # the command's files are on disk: a Ctrl-C now changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # a Ctrl-C in the instant main returns
        code = EXIT_INTERRUPTED
    # No interpreter teardown (~0.5 s with torch loaded): runtime.exit_now. The app too, once
    # it has restored the terminal: its engine thread (a daemon) may be inside a torch op of
    # a prefetch, and a teardown under it can abort the process ("terminate called without
    # an active exception"). The app writes nothing that is still open: its exports are
    # written whole, and the training child is a process of its own.
    from grok_engine import runtime

    runtime.exit_now(code)


__all__ = ["COMMANDS", "entry", "main"]
