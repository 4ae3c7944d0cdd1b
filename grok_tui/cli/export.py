"""``grok-tui export RUN [--checkpoint EPOCH] [--study NAME] [--out PATH] [--all]``.

Writes the studies of one checkpoint (default: the last) as CSV files (grok_engine.export)
and prints each study's headline scalars, so the notebook's findings (PC1+PC2 explained
variance, probe R^2, neurons above 0.9, accuracy after keeping only PC1, ...) read straight
off the terminal. Unknown run, checkpoint or study: one line listing what exists, exit 2.
Nothing is written outside --out: the run folder may be read-only. A checkpoint that
cannot be read is skipped by the progress study, which names it in its ``note``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grok_tui.cli.args import add_runs_dir, fail, nonempty, runs_folder
from grok_tui.format import scalar

DESCRIPTION = "Write the studies of a checkpoint to CSV files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", type=nonempty, help="a run id (see grok-tui runs)")
    parser.add_argument("--checkpoint", metavar="EPOCH", default=None,
                        help="epoch of the checkpoint (default: the last)")
    parser.add_argument("--study", metavar="NAME", action="append", default=None,
                        help="a study to write (repeatable; default: every study)")
    parser.add_argument("--all", action="store_true", help="every study (the default)")
    parser.add_argument("--out", metavar="PATH", default=None, type=nonempty,
                        help="folder to write into (default exports/RUN/epoch<EPOCH>)")
    add_runs_dir(parser)


def main(args: argparse.Namespace) -> int:
    if args.all and args.study:
        return fail("give --study NAME or --all, not both")
    from grok_engine.errors import GrokError
    from grok_engine.studies import STUDY_MODULES

    for name in args.study or []:
        if name not in STUDY_MODULES:
            return fail(f"study {name!r} does not exist: choose one of {', '.join(STUDY_MODULES)}")
    try:
        epoch_asked = int(args.checkpoint) if args.checkpoint is not None else None
    except ValueError:
        return fail(f"--checkpoint {args.checkpoint!r} is not an integer epoch")

    from grok_engine.paths import export_folder
    from grok_engine.session import RunSession
    from grok_engine.store import RunStore

    try:
        store = RunStore(runs_folder(args.runs_dir))
        run = store.open(args.run)
        epochs = run.checkpoint_epochs()
        if not epochs:
            return fail(f"run {run.id} has no checkpoints yet")
        epoch = epochs[-1] if epoch_asked is None else epoch_asked
        if epoch not in epochs:
            shown = ", ".join(map(str, epochs[:12])) + (" ..." if len(epochs) > 12 else "")
            return fail(f"checkpoint epoch={epoch} does not exist in run {run.id}: have {shown}")
        folder = Path(args.out) if args.out else export_folder(run.id, epoch)

        def report(result, paths: list[Path]) -> None:
            scalars = "  ".join(f"{k}={scalar(v)}" for k, v in result.scalars.items())
            print(f"{result.study}: {len(paths)} files" + (f"  {scalars}" if scalars else ""))

        # the app's export path: the session's context of the checkpoint, its studies
        session = RunSession(store, run, prefetch=False)
        try:
            written = session.export_checkpoint(epoch, folder, studies=args.study, on_result=report)
        finally:
            session.close()
    except GrokError as exc:
        return fail(str(exc))
    print(f"wrote {len(written)} files for run {run.id} epoch {epoch} in {folder}")
    return 0
