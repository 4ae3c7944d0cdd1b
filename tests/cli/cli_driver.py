"""Run many ``grok-tui`` command lines in one process start: each row is a forked child
that runs the console script's ``entry()`` as a fresh process would, with its own argv,
cwd, environment, stdout and stderr files, and exit code. torch and the CLI's modules are
imported once, before the first fork, so a row costs milliseconds instead of the seconds a
new interpreter takes to import torch. An exception that escapes ``entry()`` is printed
with its traceback and exits 1, exactly as the interpreter would.

    python tests/engine/cli_driver.py ROWS.json OUT_DIR WATCH_DIR

ROWS.json: a list of {"argv": [...], "cwd": str, "env": {...}, "unprivileged": bool}.
A row marked ``unprivileged`` runs as user ``nobody`` when the driver is root, so that a
file's permissions apply to it. Writes OUT_DIR/<i>.out and <i>.err per row and prints one
JSON line: per row, the exit code (-14 when it ran past ROW_TIMEOUT_S) and the paths under
WATCH_DIR that the row added, removed or changed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

NOBODY = 65534
ROW_TIMEOUT_S = 60  # a row that trains by mistake is killed (SIGALRM), not waited for


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of everything under ``root`` (folders too)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            seen[path] = (st.st_size if name in files else 0, st.st_mtime_ns if name in files else 0)
    return seen


def warm_imports(studies: bool) -> None:
    """Everything a row may import lazily: a child running as nobody may not be able to
    read the interpreter's own files. ``studies``: what running the studies imports too
    (transformer_lens, scikit-learn: seconds)."""
    import errno  # noqa: F401
    import importlib

    try:
        import tomllib  # noqa: F401
    except ImportError:  # Python 3.10
        import tomli  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import rich.markup  # noqa: F401
    import rich.measure  # noqa: F401
    import safetensors  # noqa: F401

    import grok_engine.context  # noqa: F401
    import grok_engine.export  # noqa: F401
    import grok_engine.notebook_import  # noqa: F401
    import grok_engine.store  # noqa: F401
    import grok_engine.train  # noqa: F401
    import grok_engine.runtime  # noqa: F401
    import grok_tui.app  # noqa: F401
    import grok_tui.cli  # noqa: F401
    for name in grok_tui.cli.COMMANDS.values():
        importlib.import_module(name)
    importlib.import_module(grok_tui.cli.APP_MODULE)
    if studies:
        import sklearn.linear_model  # noqa: F401 - the probe study's, imported when it runs
        import sklearn.model_selection  # noqa: F401

        import grok_engine.model  # noqa: F401
        from grok_engine.studies import STUDY_MODULES, get_study

        for name in STUDY_MODULES:
            get_study(name)


def run_row(i: int, row: dict, out_dir: str) -> None:
    """In the forked child: become the command of ``row`` and exit with its code."""
    out = os.open(os.path.join(out_dir, f"{i}.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(os.path.join(out_dir, f"{i}.err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    code = 1
    signal.alarm(ROW_TIMEOUT_S)
    try:
        os.chdir(row["cwd"])
        os.environ.update(row.get("env", {}))
        if row.get("unprivileged") and os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        from grok_tui import cli

        sys.argv = ["grok-tui", *row["argv"]]
        try:
            cli.entry()  # headless commands leave through os._exit
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - what the interpreter would print
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    rows_path, out_dir, watch = sys.argv[1:4]
    with open(rows_path) as fh:
        rows = json.load(fh)
    warm_imports(studies=any(row["argv"][:1] == ["export"] and row.get("unprivileged") for row in rows))
    results = []
    before = snapshot(watch)
    for i, row in enumerate(rows):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_row(i, row, out_dir)
        _, status = os.waitpid(pid, 0)
        after = snapshot(watch)
        changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        results.append({"code": os.waitstatus_to_exitcode(status), "changed": changed})
        before = after
    print(json.dumps(results))


if __name__ == "__main__":
    main()
