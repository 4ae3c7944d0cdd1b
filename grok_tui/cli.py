"""The ``grok-tui`` command.

    grok-tui [RUN] [--runs-dir DIR]          the Textual app (a run, or the run picker)
    grok-tui train [flags]                   headless training with a progress bar
    grok-tui runs [--runs-dir DIR]           a table of runs
    grok-tui import FILE.pth [--runs-dir]    a notebook save file -> a run
    grok-tui export RUN [...]                studies of a checkpoint -> CSV
    grok-tui sweep [flags] --grid F=V1,V2    a grid of runs (grok_tui/sweep_cmd.py)
    grok-tui sweeps [--runs-dir DIR]         a table of sweeps

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
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it (128 + SIGINT)
SUBCOMMANDS = ("train", "runs", "import", "export", "sweep", "sweeps")


class UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{self.prog}: {message}")


def fail(message: str) -> int:
    print(f"grok-tui: {message}", file=sys.stderr)
    return EXIT_USAGE


def nonempty(text: str) -> str:
    """An argparse type: any text but the empty string (a path, a run id)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value is not allowed")
    return text


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=None, type=nonempty,
                        help="folder of runs (default $GROK_TUI_RUNS_DIR or ./runs)")


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None


def _accuracy(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy in (0, 1], e.g. 0.99")
    return value


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
    parser.add_argument("--config", default=None, type=nonempty,
                        help="a TOML file with [task] [model] [train]")
    parser.add_argument("--resume", metavar="RUN", default=None, type=nonempty,
                        help="continue RUN from its last checkpoint (up to --epochs; flags that "
                             "would change its config are refused)")
    parser.add_argument("--run-id", default=None, type=nonempty, help="name of the new run's folder")
    parser.add_argument("--stop-at-test-acc", type=_accuracy, default=None, metavar="ACC",
                        help="stop once test accuracy reaches ACC, in (0, 1] (e.g. 0.99)")
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


def runs_folder(runs_dir: str | None, writing: bool = False):
    """The runs folder (--runs-dir, $GROK_TUI_RUNS_DIR or ./runs), refused with GrokError when
    it is a file, or, for ``writing``, when a new run cannot be created in it. Nothing is
    created here: a folder that does not exist yet is made with the first run."""
    from grok_engine.errors import GrokError, describe_os_error
    from grok_engine.store import default_runs_dir

    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    name = f"--runs-dir {runs_dir!r}" if runs_dir is not None else f"the runs folder {str(root)!r}"
    existing = root
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent  # the nearest folder that exists: the run goes below it
    try:
        is_dir = existing.is_dir()
    except OSError as exc:
        raise GrokError(f"{name}: {describe_os_error(exc)}") from None
    if not is_dir:
        what = "is a file, not a folder" if existing == root else f"is inside {str(existing)!r}, a file"
        raise GrokError(f"{name} {what}")
    if writing:
        check_writable(existing, f"{name} cannot take a new run")
    return root


def check_writable(folder: Path, what: str) -> None:
    """GrokError "WHAT: read-only file system" or "...: permission denied" unless files can
    be created in ``folder`` (checked before anything is written, not found out midway)."""
    from grok_engine.errors import GrokError

    if _read_only_fs(folder):
        raise GrokError(f"{what}: read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GrokError(f"{what}: permission denied on {str(folder)!r}")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will tell
        return False


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
    from grok_engine.errors import GrokError
    from grok_tui.headless import print_runs

    try:
        return print_runs(runs_folder(args.runs_dir))
    except GrokError as exc:
        return fail(str(exc))


def cmd_import(argv: Sequence[str]) -> int:
    parser = Parser(prog="grok-tui import", description="Import a notebook .pth save file.")
    parser.add_argument("file", metavar="FILE.pth", type=nonempty)
    parser.add_argument("--run-id", default=None, type=nonempty)
    _add_runs_dir(parser)
    args = parser.parse_args(argv)
    from grok_engine.errors import GrokError
    from grok_engine.notebook_import import import_notebook
    from grok_engine.store import RunStore

    try:
        store = RunStore(runs_folder(args.runs_dir, writing=True))
        run = import_notebook(args.file, store, run_id=args.run_id)
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


def cmd_compare(argv: Sequence[str]) -> int:
    from grok_tui import compare_cmd

    parser = Parser(prog="grok-tui compare", description="Compare 2-8 runs side by side.")
    compare_cmd.add_arguments(parser)
    return compare_cmd.main(parser.parse_args(argv))


def cmd_sweep(argv: Sequence[str]) -> int:
    from grok_tui.sweep_cmd import run_sweep

    return run_sweep(argv)


def cmd_sweeps(argv: Sequence[str]) -> int:
    from grok_tui.sweep_cmd import run_sweeps

    return run_sweeps(argv)


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "import": cmd_import, "export": cmd_export,
            "sweep": cmd_sweep, "sweeps": cmd_sweeps, "compare": cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return cmd_app(argv)
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
    headless = len(sys.argv) > 1 and sys.argv[1] in COMMANDS
    try:
        code = main()
        if headless:  # the command's files are on disk: a Ctrl-C now changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # a Ctrl-C in the instant main returns
        code = EXIT_INTERRUPTED
    if headless:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, which takes ~0.5 s once torch is loaded
    (measured on a 2-core CPU: longer than a 500-epoch run). Only after a headless
    command: it has closed every file it wrote and joined its writer thread, and it runs
    no other thread. atexit handlers still run, deaf to Ctrl-C (a KeyboardInterrupt in one
    prints a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
