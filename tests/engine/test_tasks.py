"""Tasks and splits: labels against a plain-Python reference, the notebook's split."""

from __future__ import annotations

import pytest
import torch

from grok_engine.config import TASKS, TaskConfig
from grok_engine.tasks import make_dataset, split_indices


def reference_label(task: str, a: int, b: int, p: int) -> int:
    """Each task's label written out in plain integers, independently of tasks.py."""
    if task == "add":
        return a + b
    if task == "mod_add":
        return (a + b) % p
    if task == "mod_sub":
        return (a - b) % p
    if task == "mod_mul":
        return (a * b) % p
    if task == "mod_div":
        # the x with x * b == a (mod p), found by search rather than by Fermat
        return next(x for x in range(p) if (x * b) % p == a)
    if task == "poly":
        return (a * a + a * b + b * b) % p
    raise AssertionError(task)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("p", [5, 7, 11])
def test_labels_match_reference(task, p):
    ds = make_dataset(TaskConfig(task=task, p=p, frac_train=0.5))
    pairs = [(a, b) for a in range(p) for b in range(p) if not (task == "mod_div" and b == 0)]
    expected_tokens = torch.tensor([[a, b, p] for a, b in pairs])
    expected_labels = torch.tensor([reference_label(task, a, b, p) for a, b in pairs])
    assert ds.tokens.dtype == torch.int64 and ds.labels.dtype == torch.int64
    assert torch.equal(ds.tokens, expected_tokens)  # a-major rows [a, b, =], '=' is p
    assert torch.equal(ds.labels, expected_labels)


def test_add_labels_span_two_p_outputs():
    ds = make_dataset(TaskConfig(task="add", p=10))
    assert int(ds.labels.max()) == 18 and TaskConfig(task="add", p=10).d_vocab_out == 20
    assert TaskConfig(task="mod_add", p=10).d_vocab_out == 10


@pytest.mark.parametrize("p, frac, seed", [(10, 0.72, 598), (7, 0.3, 0), (11, 0.5, 12345), (13, 0.9, 1)])
def test_split_is_the_notebooks_randperm(p, frac, seed):
    """The notebook: torch.manual_seed(DATA_SEED); indices = torch.randperm(p*p);
    cutoff = int(p*p*frac_train)."""
    torch.manual_seed(seed)
    indices = torch.randperm(p * p)
    cutoff = int(p * p * frac)
    ds = make_dataset(TaskConfig(task="mod_add", p=p, frac_train=frac, data_seed=seed))
    assert torch.equal(ds.train_indices, indices[:cutoff])
    assert torch.equal(ds.test_indices, indices[cutoff:])


@pytest.mark.parametrize("task", TASKS)
def test_split_is_disjoint_and_complete(task):
    cfg = TaskConfig(task=task, p=11, frac_train=0.4, data_seed=3)
    ds = make_dataset(cfg)
    train, test = ds.train_indices.tolist(), ds.test_indices.tolist()
    assert len(train) == int(cfg.n_rows * 0.4)
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(cfg.n_rows)) == list(range(len(ds.labels)))
    assert int(ds.is_train().sum()) == len(train) and bool(ds.is_train()[ds.train_indices].all())


def test_split_leaves_global_rng_alone():
    torch.manual_seed(42)
    expected = torch.rand(5)
    torch.manual_seed(42)
    make_dataset(TaskConfig(task="mod_add", p=11, frac_train=0.3, data_seed=7))
    split_indices(TaskConfig(task="add", p=10))
    assert torch.equal(torch.rand(5), expected)


def test_different_data_seeds_give_different_splits():
    a = make_dataset(TaskConfig(task="mod_add", p=11, frac_train=0.3, data_seed=1))
    b = make_dataset(TaskConfig(task="mod_add", p=11, frac_train=0.3, data_seed=2))
    assert not torch.equal(a.train_indices, b.train_indices)


@pytest.mark.parametrize("p", [5, 7, 11, 13])
def test_mod_div_rows(p):
    ds = make_dataset(TaskConfig(task="mod_div", p=p, frac_train=0.5))
    a, b, labels = ds.tokens[:, 0], ds.tokens[:, 1], ds.labels
    assert len(labels) == p * (p - 1) == TaskConfig(task="mod_div", p=p, frac_train=0.5).n_rows
    assert bool((b != 0).all())
    assert torch.equal((labels * b) % p, a)
    assert bool(((labels >= 0) & (labels < p)).all())
    # every non-zero b still appears with every a
    assert sorted(set(zip(a.tolist(), b.tolist()))) == [(x, y) for x in range(p) for y in range(1, p)]
