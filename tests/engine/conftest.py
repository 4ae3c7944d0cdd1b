"""Shared fixtures for the engine tests: tiny analysis contexts built from random weights.

Fixture names are relied on by several test files; keep them stable:
``tiny_ctx_add`` (integer addition, p=7), ``tiny_ctx_mod`` (mod_add, p=11),
``tiny_ctx_div`` (mod_div, p=7: the rows with b = 0 are absent), ``tiny_factory``. All share one small model
(d_model 32, d_mlp 64, 2 heads of 16) with the notebook's init for the matrices and
random, non-zero biases, so code that forgets a bias gives a different answer. The
contexts are session-wide: treat them as read-only. ``tiny_factory`` builds variants.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from grok_engine.config import RunConfig
from grok_engine.weights import init_weights, is_bias
from tests.fixtures import tiny_config as shared_tiny_config, train_tiny_run


def tiny_config(task: str, p: int, seed: int = 0, **model) -> RunConfig:
    """The tiny model on ``task`` (frac_train 0.7); keyword arguments override its sizes."""
    return shared_tiny_config(task=task, p=p, frac_train=0.7, seed=seed, **model)


def tiny_weights(config: RunConfig, bias_std: float = 0.1) -> dict[str, torch.Tensor]:
    """The notebook's init for ``config`` with every bias drawn from N(0, bias_std^2)."""
    weights = init_weights(config.task, config.model)
    gen = torch.Generator().manual_seed(config.model.seed + 1)
    for name, value in weights.items():
        if is_bias(name):
            weights[name] = torch.randn(value.shape, generator=gen) * bias_std
    return weights


def tiny_context(task: str, p: int, seed: int = 0, edit=None, **model):
    """A context of the tiny model (sizes overridable as in :func:`tiny_config`);
    ``edit(weights)`` may change the weights in place first."""
    from grok_engine.context import context_from_weights

    config = tiny_config(task, p, seed, **model)
    weights = tiny_weights(config)
    if edit is not None:
        edit(weights)
    return context_from_weights(config, weights)


@pytest.fixture(scope="session")
def tiny_factory():
    """The builders here, for tests that need a variant: ``.config(task, p)``,
    ``.weights(config)``, ``.context(task, p, edit=fn)``, ``.trained_run(root, id, epochs=..)``."""
    return SimpleNamespace(config=tiny_config, weights=tiny_weights, context=tiny_context,
                           trained_run=train_tiny_run)


@pytest.fixture(scope="session")
def tiny_ctx_add():
    return tiny_context("add", 7)


@pytest.fixture(scope="session")
def tiny_ctx_mod():
    return tiny_context("mod_add", 11)


@pytest.fixture(scope="session")
def tiny_ctx_div():
    return tiny_context("mod_div", 7)
