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
import atexit
import os
import sys
from typing import Any, Sequence

EXIT_USAGE = 2
SUBCOMMANDS = ("train", "runs", "import", "export")


class UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{self.prog}: {message}")


def fail(message: str) -> int:
    print(f"grok-tui: {message}", file=sys.stderr)
    return EXIT_USAGE


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=None,
                        help="folder of runs (default $GROK_TUI_RUNS_DIR or ./runs)")


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


# flag -> config field (flat name); type
TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--task", "task", str, "add | mod_add | mod_sub | mod_mul | mod_div | poly"),
    ("--p", "p", _positive_int, "modulus / number of input tokens"),
    ("--frac-train", "frac_train", _number, "fraction of pairs in the train split, in (0, 1)"),
    ("--data-seed", "data_seed", _positive_int, "seed of the train/test split"),
    ("--seed", "seed", _positive_int, "seed of the weight initialisation"),
    ("--epochs", "epochs", _positive_int, "epochs to train (in total)"),
    ("--checkpoint-every", "checkpoint_every", _positive_int, "epochs between checkpoints"),
    ("--eval-every", "eval_every", _positive_int, "epochs between test evaluations (1 = every epoch)"),
    ("--lr", "lr", _number, "AdamW learning rate"),
    ("--weight-decay", "weight_decay", _number, "AdamW weight decay"),
    ("--grokfast-alpha", "grokfast_alpha", _number, "Grokfast EMA decay"),
    ("--grokfast-lamb", "grokfast_lamb", _number, "Grokfast amplification"),
    ("--device", "device", str, "auto | cpu | cuda | mps"),
    ("--n-layers", "n_layers", _positive_int, "transformer layers"),
    ("--n-heads", "n_heads", _positive_int, "attention heads"),
    ("--d-model", "d_model", _positive_int, "residual width"),
    ("--d-head", "d_head", _positive_int, "head width"),
    ("--d-mlp", "d_mlp", _positive_int, "MLP width"),
    ("--act-fn", "act_fn", str, "relu | gelu"),
    ("--normalization", "normalization", str, "none | LN"),
]


def build_train_parser() -> Parser:
    parser = Parser(prog="grok-tui train", description="Train a run headless.")
    for flag, dest, kind, help_text in TRAIN_FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)
    parser.add_argument("--grokfast", dest="grokfast", action="store_true", default=None,
                        help="Grokfast EMA gradient filter (Lee et al. 2024)")
    parser.add_argument("--preset", default=None, help="notebook | fast (training settings)")
    parser.add_argument("--config", default=None, help="a TOML file with [task] [model] [train]")
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="continue RUN from its last checkpoint (up to --epochs)")
    parser.add_argument("--run-id", default=None, help="name of the new run's folder")
    parser.add_argument("--stop-at-test-acc", type=_number, default=None, metavar="ACC",
                        help="stop once test accuracy reaches ACC (e.g. 0.99)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="train even when the memory estimate exceeds what is available")
    _add_runs_dir(parser)
    return parser


def _load_toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"--config {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path!r} is not valid TOML ({exc})") from None


def train_config_from_args(args: argparse.Namespace):
    """config file (or defaults) -> preset -> explicit flags."""
    from grok_engine.config import RunConfig, apply_preset

    config = RunConfig.from_dict(_load_toml(args.config)) if args.config else RunConfig()
    if args.preset:
        config = apply_preset(config, args.preset)
    overrides = {dest: getattr(args, dest) for _flag, dest, _k, _h in TRAIN_FLAGS
                 if getattr(args, dest) is not None}
    if args.grokfast:
        overrides["grokfast"] = True
    return config.replace(**overrides) if overrides else config


def cmd_train(argv: Sequence[str]) -> int:
    args = build_train_parser().parse_args(argv)
    from grok_engine.errors import GrokError
    from grok_tui.headless import train_headless

    try:
        return train_headless(args)
    except GrokError as exc:
        return fail(str(exc))


def cmd_runs(argv: Sequence[str]) -> int:
    parser = Parser(prog="grok-tui runs", description="List runs.")
    _add_runs_dir(parser)
    args = parser.parse_args(argv)
    from grok_tui.headless import print_runs

    return print_runs(args.runs_dir)


def cmd_import(argv: Sequence[str]) -> int:
    parser = Parser(prog="grok-tui import", description="Import a notebook .pth save file.")
    parser.add_argument("file", metavar="FILE.pth")
    parser.add_argument("--run-id", default=None)
    _add_runs_dir(parser)
    args = parser.parse_args(argv)
    from grok_engine.errors import GrokError
    from grok_engine.notebook_import import import_notebook
    from grok_engine.store import RunStore

    try:
        run = import_notebook(args.file, RunStore(args.runs_dir), run_id=args.run_id)
    except GrokError as exc:
        return fail(str(exc))
    s = run.summary()
    print(f"imported {args.file} as run {run.id} ({s.task} p={s.p}, {len(run.checkpoint_epochs())} "
          f"checkpoints, {s.epochs_done} epochs) in {run.path.parent}")
    return 0


def cmd_export(argv: Sequence[str]) -> int:
    try:
        from grok_tui.export_cli import run_export
    except ImportError:
        return fail("export is not available in this build")
    return run_export(argv)


def cmd_app(argv: Sequence[str]) -> int:
    parser = Parser(prog="grok-tui", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", default=None, metavar="RUN", help="a run id to open")
    _add_runs_dir(parser)
    args = parser.parse_args(argv)
    from grok_tui.app import run_app

    return run_app(args.run, args.runs_dir)


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "import": cmd_import, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return cmd_app(argv)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    """Console-script entry point."""
    code = main()
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, which takes ~0.5 s once torch is loaded
    (measured on a 2-core CPU: longer than a 500-epoch run). Only after a headless
    command: it has closed every file it wrote and joined its writer thread, and it runs
    no other thread. atexit handlers still run."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`grok-tui runs | head -1`)
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    entry()
