"""The panes read what the studies return: every table, column, grid and scalar a pane reads
(through grok_engine.studies.schema) exists in the study's real result, on the committed
tiny run (add, p=7) or the tiny mod_add run of conftest (the Fourier structure and the
frequency ranking exist for modular tasks only)."""

from __future__ import annotations

import shutil
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from grok_engine.results import StudyResult
from grok_engine.studies import STUDY_MODULES, run_study
from grok_engine.studies.schema import SCHEMAS, ResultView, UndeclaredName
from grok_tui.panes.registry import pane_classes
from test_panes import showing  # noqa: E402 - tests/tui is on sys.path (conftest)

pytestmark = pytest.mark.anyio
TINY_RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "tiny"


@pytest.fixture(scope="module")
def add_results(tmp_path_factory) -> dict[str, StudyResult]:
    """Every study on the committed tiny run (add, p=7) at its last checkpoint."""
    from grok_engine.context import context_for
    from grok_engine.store import RunStore

    root = tmp_path_factory.mktemp("schema_runs")
    shutil.copytree(TINY_RUN, root / "tiny")
    run = RunStore(root).open("tiny")
    ctx = context_for(run, run.checkpoint_epochs()[-1])
    return {name: run_study(name, ctx, **({"save_cache": False} if name == "progress" else {}))
            for name in STUDY_MODULES}


def exists(kind: str, name: str, result: StudyResult) -> bool:
    """Whether ``result`` holds the item a pane read (a name or a declared pattern)."""
    if kind == "table":
        return name in result.tables
    if kind == "grid":
        return any(fnmatchcase(g, name) for g in result.grids)
    if kind == "scalar":
        return name in result.scalars
    table, column = name.split(".", 1)
    return table in result.tables and any(fnmatchcase(c, column) for c in result.tables[table].columns)


def test_every_study_declares_its_schema_and_its_scope():
    assert set(SCHEMAS) == set(STUDY_MODULES)
    assert {s for s, schema in SCHEMAS.items() if schema.scope == "run"} == {"curves", "progress"}


def test_a_study_that_breaks_its_schema_is_refused(add_results):
    result = add_results["ablation"]
    broken = StudyResult("ablation", result.epoch, dict(result.tables), dict(result.grids),
                         {**result.scalars, "n_components": 7})
    with pytest.raises(ValueError, match="scalar 'n_components' not declared"):
        SCHEMAS["ablation"].check(broken)
    del broken.scalars["n_components"], broken.scalars["n_rows"]
    with pytest.raises(ValueError, match="scalar 'n_rows' missing"):
        SCHEMAS["ablation"].check(broken)
    with pytest.raises(UndeclaredName, match="declares no column 'phases.start'"):
        SCHEMAS["curves"].view(add_results["curves"]).column("phases", "start")


async def test_every_key_each_pane_reads_exists_in_the_real_result(add_results, study_results):
    ResultView.READS.clear()
    sources = {"add": add_results, "mod_add": study_results}
    for results in sources.values():
        for cls in pane_classes():
            pane = cls()
            async with showing(pane, results[cls.STUDY]) as (app, pilot):
                for extra in cls.EXTRA_STUDIES:
                    pane.show_extra(extra, results[extra])
                await pilot.pause()
                for _ in range(8):  # every view, and what `e` would export from it
                    pane.export_target()
                    await pilot.press("v")
                    await pilot.pause()
    read_by = {cls.STUDY for cls in pane_classes()} | {e for cls in pane_classes() for e in cls.EXTRA_STUDIES}
    assert {study for study, _, _ in ResultView.READS} == read_by  # every pane read through its schema
    missing = [(study, kind, name) for study, kind, name in sorted(ResultView.READS)
               if not any(exists(kind, name, results[study]) for results in sources.values())]
    assert not missing, missing
