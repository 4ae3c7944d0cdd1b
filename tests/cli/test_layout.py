"""The CLI package's shape: imports go one way (no module imports one that imports it), no
ImportError is turned into a message, every registered subcommand has the interface the
dispatcher calls, and both ways of starting the command work."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import grok_tui.cli as cli
from grok_tui.cli import COMMANDS, main

PACKAGE = Path(cli.__file__).parent
ROOT = PACKAGE.parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def module_name(path: Path) -> str:
    name = "grok_tui.cli" if path.name == "__init__.py" else f"grok_tui.cli.{path.stem}"
    return name


def imports_of(path: Path) -> set[str]:
    """Every grok_tui.cli module ``path`` imports, at module level or inside a function;
    the package itself for ``from grok_tui.cli import X`` (X not a submodule)."""
    found: set[str] = set()
    submodules = {p.stem for p in PACKAGE.glob("*.py")}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("grok_tui.cli")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grok_tui.cli"):
            if node.module == "grok_tui.cli":
                found |= {f"grok_tui.cli.{a.name}" if a.name in submodules else "grok_tui.cli"
                          for a in node.names}
            else:
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imports_of(p) for p in PACKAGE.glob("*.py")}
    graph["grok_tui.cli"] |= set(COMMANDS.values()) | {cli.APP_MODULE}  # imported by name
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_cli_module_imports_one_that_imports_it():
    graph = import_graph()
    assert set(COMMANDS.values()) <= set(graph), "every registered command is a module of the package"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_subcommands_never_import_the_package_init():
    """Only __main__ (the program, which nothing imports) starts from the package."""
    offenders = [name for name, deps in import_graph().items()
                 if name not in ("grok_tui.cli", "grok_tui.cli.__main__") and "grok_tui.cli" in deps]
    assert offenders == []


def test_no_import_error_is_swallowed():
    """A handler that catches ImportError may only try another import (tomli on Python
    3.10) or clean up and re-raise."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if caught & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}:
                    reraises = isinstance(node.body[-1], ast.Raise) and node.body[-1].exc is None
                    if not reraises and not all(isinstance(stmt, (ast.Import, ast.ImportFrom)) for stmt in node.body):
                        offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_an_import_error_in_a_subcommand_is_raised_not_reported(monkeypatch, tmp_path):
    import grok_tui.cli.export as export

    def broken(args):
        raise ImportError("a module the export needs is missing")

    monkeypatch.setattr(export, "main", broken)
    with pytest.raises(ImportError, match="the export needs"):
        main(["export", "tiny", "--runs-dir", str(tmp_path)])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_subcommand_has_the_interface(name):
    parser, module = cli.build_parser(name)
    assert callable(module.add_arguments) and callable(module.main)
    assert parser.prog == f"grok-tui {name}"


def test_python_dash_m_and_the_console_script_entry():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["grok-tui"] == "grok_tui.cli:entry" and callable(cli.entry)
    out = subprocess.run([sys.executable, "-m", "grok_tui.cli", "runs", "--help"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: grok-tui runs" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "grok_tui.cli", "train", "--bogus"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "grok-tui train: unrecognized arguments: --bogus"
