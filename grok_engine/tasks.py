"""Tasks and datasets: every (a, b) pair as a token row ``[a, b, =]`` with its label.

The '=' token is ``p``. Rows are ordered a-major (row ``a*p + b``), as the notebook's
``einops.repeat`` builds them, so ``values.reshape(p, p)`` is a grid over (a, b).
For ``mod_div`` the rows with b = 0 are left out (division by zero has no answer).
The train/test split is the notebook's: ``torch.manual_seed(data_seed);
torch.randperm(n_rows)``, the first ``int(n_rows * frac_train)`` indices train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grok_engine.config import TaskConfig


def labels_for(task: str, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """Label of each pair. a, b: [n] int64 in [0, p). Returns [n] int64."""
    if task == "add":
        return a + b
    if task == "mod_add":
        return (a + b) % p
    if task == "mod_sub":
        return (a - b) % p
    if task == "mod_mul":
        return (a * b) % p
    if task == "mod_div":
        # a / b = a * b^(p-2) mod p (Fermat), p prime and b != 0
        inv = torch.tensor([pow(int(x), p - 2, p) if int(x) else 0 for x in range(p)])
        return (a * inv[b]) % p
    if task == "poly":
        return (a * a + a * b + b * b) % p
    raise ValueError(f"task={task!r} is unknown")


@dataclass(frozen=True)
class Dataset:
    """All rows of a task and its split.

    tokens: [n_rows, 3] int64 rows ``[a, b, p]``; labels: [n_rows] int64;
    train_indices / test_indices: int64 row indices (disjoint, together all rows).
    """

    config: TaskConfig
    tokens: torch.Tensor
    labels: torch.Tensor
    train_indices: torch.Tensor
    test_indices: torch.Tensor

    @property
    def a(self) -> torch.Tensor:
        return self.tokens[:, 0]

    @property
    def b(self) -> torch.Tensor:
        return self.tokens[:, 1]

    def is_train(self) -> torch.Tensor:
        """[n_rows] bool, True where the row is in the train split."""
        mask = torch.zeros(len(self.labels), dtype=torch.bool)
        mask[self.train_indices] = True
        return mask


def all_pairs(config: TaskConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [n_rows, 3], labels [n_rows] for every valid pair, a-major."""
    p = config.p
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if config.task == "mod_div":
        keep = b != 0
        a, b = a[keep], b[keep]
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return tokens, labels_for(config.task, a, b, p)


def split_indices(config: TaskConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's split: randperm under manual_seed(data_seed), without touching the
    caller's global RNG state."""
    gen = torch.Generator().manual_seed(config.data_seed)
    perm = torch.randperm(config.n_rows, generator=gen)
    cutoff = config.n_train
    return perm[:cutoff].clone(), perm[cutoff:].clone()


def make_dataset(config: TaskConfig) -> Dataset:
    tokens, labels = all_pairs(config)
    train_indices, test_indices = split_indices(config)
    return Dataset(config, tokens, labels, train_indices, test_indices)
