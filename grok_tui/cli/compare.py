"""``grok-tui compare RUN RUN [...]``: the app's comparison screen on 2-8 runs.

Bad input (fewer than 2 or more than 8 runs, a run given
twice, a run that does not exist) is one line on stderr and exit code 2, before the app
starts (no torch is imported to check it).
"""

from __future__ import annotations

import argparse

from grok_tui.cli.args import add_runs_dir, fail, nonempty

DESCRIPTION = "Compare 2-8 runs side by side."
MIN_RUNS, MAX_RUNS = 2, 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", type=nonempty, help=f"{MIN_RUNS} to {MAX_RUNS} run ids")
    add_runs_dir(parser)


def problem(run_ids: list[str], runs_dir) -> str | None:
    """Why these run ids cannot be compared (one line), or None."""
    from grok_tui.app import _run_ids, run_exists

    if not MIN_RUNS <= len(run_ids) <= MAX_RUNS:
        return f"compare takes {MIN_RUNS} to {MAX_RUNS} runs, got {len(run_ids)}"
    twice = sorted({r for r in run_ids if run_ids.count(r) > 1})
    if twice:
        return f"run {twice[0]!r} is given twice: give each run once"
    for run_id in run_ids:
        if not run_exists(runs_dir, run_id):
            have = _run_ids(runs_dir)
            shown = ", ".join(have[:10]) + (" ..." if len(have) > 10 else "")
            return f"run {run_id!r} does not exist in {runs_dir}: have {shown or 'no runs'}"
    return None


def main(args: argparse.Namespace) -> int:
    from grok_tui.app import GrokApp, resolve_runs_dir

    root = resolve_runs_dir(args.runs_dir)
    why = problem(list(args.runs), root)
    if why is not None:
        return fail(why)
    GrokApp(None, root, compare=list(args.runs)).run()
    return 0
