"""The studies of the notebook, one module each, all in one registry.

Each study is a function ``fn(ctx: Context, **options) -> StudyResult`` registered with
:func:`register`. ``STUDY_MODULES`` lists them without importing torch, so the TUI's pane
list, ``export --all`` and the command palette all come from the same names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

# name -> (module, title); order is the pane order.
STUDY_MODULES: dict[str, tuple[str, str]] = {
    "curves": ("grok_engine.studies.curves", "Training curves and grokking phases"),
    "embedding": ("grok_engine.studies.embedding", "Embedding PCA and SVD"),
    "attention": ("grok_engine.studies.attention", "Attention from '='"),
    "probe": ("grok_engine.studies.probe", "Linear probe of the MLP at '='"),
    "neurons": ("grok_engine.studies.neurons", "Neuron correlations with the target"),
    "ablation": ("grok_engine.studies.ablation", "PC ablation of the embeddings"),
    "fourier": ("grok_engine.studies.fourier", "Fourier structure"),
    "progress": ("grok_engine.studies.progress", "Progress measures over checkpoints"),
}


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    fn: Callable[..., Any]


_REGISTRY: dict[str, Study] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make ``fn`` the study called ``name`` (one of STUDY_MODULES)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = Study(name, STUDY_MODULES[name][1], fn)
        return fn

    return wrap


def get_study(name: str) -> Study:
    from grok_engine.errors import GrokError

    if name not in STUDY_MODULES:
        raise GrokError(f"study {name!r} does not exist: choose one of {', '.join(STUDY_MODULES)}")
    if name not in _REGISTRY:
        importlib.import_module(STUDY_MODULES[name][0])
    return _REGISTRY[name]


def run_study(name: str, ctx: Any, **options: Any) -> Any:
    """``name``'s result on ``ctx``, checked against the study's declared schema
    (grok_engine.studies.schema: a study that breaks it raises ValueError)."""
    from grok_engine.studies.schema import SCHEMAS

    result = get_study(name).fn(ctx, **options)
    SCHEMAS[name].check(result)
    return result
