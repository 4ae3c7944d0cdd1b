"""grok_engine never imports textual, rich or plotext; the app's first import is light.

Each check runs in a fresh interpreter and reads sys.modules, as harlequin's
test_import_hygiene does. Modules are found by walking the package, so new study modules
are covered without editing this file.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import grok_engine

UI_PACKAGES = ("textual", "rich", "plotext")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

PROBE = r"""
import importlib, json, sys
WATCH = ("textual", "rich", "plotext", "torch", "transformer_lens")
def present():
    return sorted({name.split(".")[0] for name in sys.modules} & set(WATCH))
report = {"__baseline__": present()}
for name in sys.argv[1:]:
    if name == "transformer_lens":
        import transformer_lens  # what TransformerLens itself brings along
    else:
        importlib.import_module(name)
    report[name] = present()
print(json.dumps(report))
"""


def start_probe(*modules: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROBE, *modules], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def finish_probe(proc: subprocess.Popen) -> dict[str, list[str]]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def probe(*modules: str) -> dict[str, list[str]]:
    """Import ``modules`` in order in a fresh interpreter; after each, the watched top-level
    packages present in sys.modules."""
    return finish_probe(start_probe(*modules))


# Imported first, in this order, so that the report after each one shows what the light
# modules pull in before anything heavier is loaded.
LIGHT_FIRST = ["grok_engine", "grok_engine.errors", "grok_engine.config", "grok_engine.results",
               "grok_engine.tasks", "grok_engine.weights", "grok_engine.fast", "grok_engine.train",
               "grok_engine.store"]


@pytest.fixture(scope="module")
def engine_report():
    """(report of importing every engine module, light ones first; what TransformerLens alone
    imports). The two interpreters run side by side."""
    modules = engine_modules()
    ordered = [m for m in LIGHT_FIRST if m in modules] + [m for m in modules if m not in LIGHT_FIRST]
    procs = start_probe(*ordered), start_probe("transformer_lens")
    report, tl_alone = finish_probe(procs[0]), finish_probe(procs[1])
    return ordered, report, set(tl_alone["transformer_lens"]) & set(UI_PACKAGES)


def engine_modules() -> list[str]:
    names = ["grok_engine"]
    for info in pkgutil.walk_packages(grok_engine.__path__, prefix="grok_engine."):
        names.append(info.name)
    return sorted(names)


def test_engine_modules_are_found():
    names = engine_modules()
    assert {"grok_engine.config", "grok_engine.train", "grok_engine.store", "grok_engine.model"} <= set(names)


def test_engine_source_never_imports_ui_packages():
    """Catches imports hidden inside functions, which importing a module does not run."""
    offenders = []
    root = Path(grok_engine.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in UI_PACKAGES:
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno} imports {name}")
    assert offenders == []


def test_importing_engine_modules_loads_no_ui_package(engine_report):
    """Modules that do not need TransformerLens must load none of textual, rich, plotext.

    TransformerLens 4 itself imports rich (transformer_lens.utilities.exploratory_utils), so
    for modules that import TransformerLens the check is: nothing beyond what
    ``import transformer_lens`` alone brings. The modules are imported one after another and
    the first one after which a package appears is the one that brought it in (direct
    imports are caught by the source scan above even when TransformerLens masks them).
    """
    modules, report, tl_own = engine_report
    assert report["__baseline__"] == []
    problems = []
    seen_ui: set[str] = set()
    for name in modules:
        ui_now = set(report[name]) & set(UI_PACKAGES)
        new = ui_now - seen_ui
        allowed = tl_own if "transformer_lens" in report[name] else set()
        if new - allowed:
            problems.append(f"import {name} loads {sorted(new - allowed)}")
        seen_ui |= ui_now
    assert problems == []


def test_light_engine_modules_skip_heavy_imports(engine_report):
    """config validates the TUI's form on first paint: no torch. The trainer, the store and
    the fast forward do not need TransformerLens (seconds to import)."""
    _modules, report, _tl = engine_report
    assert "torch" not in report["grok_engine.config"]
    assert "torch" not in report["grok_engine.results"]
    # cumulative: nothing up to and including the store has loaded TransformerLens
    assert "transformer_lens" not in report["grok_engine.store"]


def test_cli_import_is_light():
    """`grok-tui --help` must not pay for torch."""
    report = probe("grok_tui.cli")
    assert "torch" not in report["grok_tui.cli"] and "transformer_lens" not in report["grok_tui.cli"]


def test_app_import_does_not_load_torch_or_transformer_lens():
    if importlib.util.find_spec("grok_tui.app") is None:
        pytest.skip("grok_tui/app.py does not exist yet")
    report = probe("grok_tui.app")
    assert "torch" not in report["grok_tui.app"], "the app's first paint must not wait for torch"
    assert "transformer_lens" not in report["grok_tui.app"]
