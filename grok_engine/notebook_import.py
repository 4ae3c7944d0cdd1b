"""Import a run saved by the notebook's ``torch.save`` cell, without executing its pickle.

The file is a dict with ``model``, ``config`` (TransformerLens's ``HookedTransformerConfig``),
``checkpoints``, ``checkpoint_epochs``, ``train_losses``, ``test_losses``,
``train_indices``, ``test_indices``. It is read with ``torch.load(weights_only=True)``: only
tensors, containers and an allow-list of plain types can be built. The config class is
mapped to :class:`PlainConfig`, a bare attribute bag, so its fields are read as data and no
TransformerLens code runs (TransformerLens need not even be installed).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from grok_engine.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from grok_engine.errors import GrokError
from grok_engine.store import Run, RunStore, strip_buffers
from grok_engine.tasks import all_pairs
from grok_engine.train import Checkpoint, Metrics

# Where HookedTransformerConfig lived when the file was pickled.
CONFIG_PATHS = (
    "transformer_lens.config.hooked_transformer_config.HookedTransformerConfig",  # TL 3
    "transformer_lens.HookedTransformerConfig.HookedTransformerConfig",  # TL 2 module
    "transformer_lens.HookedTransformerConfig",  # TL 2 re-export
)


class PlainConfig:
    """Stand-in for HookedTransformerConfig: the pickled fields land in ``__dict__``."""


def _safe_globals() -> list:
    allowed: list = [(PlainConfig, path) for path in CONFIG_PATHS]
    # numpy scalars (e.g. attn_scale) and dtypes in the config
    allowed += [np.dtype, type(np.dtype("float64")), type(np.dtype("float32")),
                type(np.dtype("int64"))]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed += [scalar, (scalar, "numpy.core.multiarray.scalar"),
                (scalar, "numpy._core.multiarray.scalar")]
    return allowed


def load_notebook_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GrokError(f"FILE={str(path)!r} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise GrokError(f"{path} is not a notebook save file that loads safely ({first})") from None
    if not isinstance(data, dict):
        raise GrokError(f"{path} holds a {type(data).__name__}, not the notebook's dict")
    missing = [k for k in ("model", "config", "checkpoints", "checkpoint_epochs")
               if k not in data]
    if missing:
        raise GrokError(f"{path} lacks {', '.join(missing)}: not the notebook's save format")
    return data


def config_from_notebook(cfg: object, train_indices: torch.Tensor, n_epochs: int,
                         checkpoint_every: int) -> RunConfig:
    """Our RunConfig from the pickled HookedTransformerConfig fields."""
    f = getattr(cfg, "__dict__", cfg if isinstance(cfg, dict) else {})
    try:
        p = int(f["d_vocab"]) - 1
        d_vocab_out = int(f["d_vocab_out"])
        n_ctx = int(f.get("n_ctx", 3))
    except (KeyError, TypeError, ValueError):
        raise GrokError("the file's config lacks d_vocab/d_vocab_out") from None
    if n_ctx != 3:
        raise GrokError(f"n_ctx={n_ctx} is not supported: grok-tui models read [a, b, =]")
    if d_vocab_out == 2 * p:
        task = "add"
    elif d_vocab_out == p:
        task = "mod_add"  # the grokking paper's task; the labels below confirm it
    else:
        raise GrokError(f"d_vocab_out={d_vocab_out} fits no task for p={p}: expected {2 * p} or {p}")
    n_train = len(train_indices)
    frac = n_train / (p * p)
    # the smallest frac that int(p*p*frac) maps to n_train, so the split sizes round-trip
    for cand in (round(frac, 2), round(frac, 3), round(frac, 4), frac):
        if int(p * p * cand) == n_train and 0 < cand < 1:
            frac = cand
            break
    norm = f.get("normalization_type")
    model = ModelConfig(
        n_layers=int(f.get("n_layers", 1)), n_heads=int(f.get("n_heads", 4)),
        d_model=int(f.get("d_model", 128)), d_head=int(f.get("d_head", 32)),
        d_mlp=int(f.get("d_mlp", 512)), act_fn=str(f.get("act_fn", "relu")),
        normalization="LN" if norm in ("LN", "LNPre") else "none",
        seed=int(f.get("seed") or 0))
    task_cfg = TaskConfig(task=task, p=p, frac_train=frac, data_seed=598)
    train = TrainConfig(epochs=max(1, n_epochs), checkpoint_every=max(1, checkpoint_every))
    return RunConfig(task=task_cfg, model=model, train=train)


def import_notebook(path: str | Path, store: RunStore, run_id: str | None = None) -> Run:
    """Turn the notebook's save file into a run; returns it."""
    data = load_notebook_file(path)
    train_idx = torch.as_tensor(data.get("train_indices", torch.zeros(0))).long()
    test_idx = torch.as_tensor(data.get("test_indices", torch.zeros(0))).long()
    train_losses = np.asarray(data.get("train_losses", []), dtype=np.float64)
    test_losses = np.asarray(data.get("test_losses", []), dtype=np.float64)
    ckpt_epochs = [int(e) + 1 for e in data["checkpoint_epochs"]]  # notebook stores epoch index
    every = ckpt_epochs[0] if ckpt_epochs else max(1, len(train_losses))
    config = config_from_notebook(data["config"], train_idx, len(train_losses), every)
    final_weights = {k: v.float() for k, v in strip_buffers(data["model"]).items()}
    config = _guess_task(config, final_weights)
    if len(train_idx) + len(test_idx) != config.task.n_rows:
        raise GrokError(f"{path}: train+test indices cover {len(train_idx) + len(test_idx)} rows, "
                        f"expected {config.task.n_rows} for p={config.task.p}")
    run = store.create(config, run_id=run_id or store.new_id(config).replace("-p", "-nb-p", 1),
                       source=f"import:{Path(path).name}", split=(train_idx, test_idx))
    metrics = _metrics_from_losses(train_losses, test_losses)
    states = list(zip(ckpt_epochs, data["checkpoints"]))
    final_epoch = len(train_losses)
    if final_epoch and (not ckpt_epochs or ckpt_epochs[-1] != final_epoch):
        states.append((final_epoch, data["model"]))
    weights_at = {}
    for epoch, state in states:
        weights_at[epoch] = {k: v.float() for k, v in strip_buffers(state).items()}
        if 1 <= epoch <= len(metrics):  # accuracy at each checkpoint (the notebook has none)
            metrics.train_acc[epoch - 1], metrics.test_acc[epoch - 1] = _accuracies(
                config, weights_at[epoch], (train_idx, test_idx))
    for epoch, weights in weights_at.items():
        run.write_checkpoint(Checkpoint(epoch, weights, {"epoch": torch.tensor(epoch)},
                                        metrics.truncate(epoch)))
    run.write_metrics(metrics)
    return run


def _metrics_from_losses(train_losses: np.ndarray, test_losses: np.ndarray) -> Metrics:
    """The notebook records losses only; accuracy is NaN until a checkpoint is analysed."""
    n = len(train_losses)
    test = np.full(n, math.nan)
    test[: len(test_losses)] = test_losses[:n]
    nan = np.full(n, math.nan)
    return Metrics(np.arange(1, n + 1, dtype=np.int64), train_losses, test, nan.copy(), nan.copy())


def _accuracies(config: RunConfig, weights: dict[str, torch.Tensor],
                split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """(train, test) accuracy of the weights on the run's split."""
    from grok_engine.fast import last_logits

    tokens, labels = all_pairs(config.task)
    with torch.inference_mode():
        pred = last_logits(weights, tokens[:, 0], tokens[:, 1], config.model).argmax(-1)
    correct = (pred == labels).double()
    return float(correct[split[0]].mean()), float(correct[split[1]].mean())


def _guess_task(config: RunConfig, weights: dict[str, torch.Tensor]) -> RunConfig:
    """d_vocab_out == p fits every modular task: keep the one the final model predicts best."""
    if config.task.task == "add":
        return config
    from grok_engine.fast import last_logits

    best, best_acc = config, -1.0
    # mod_div is not a candidate: it drops the b = 0 rows, so a p*p split is never its split
    for task in ("mod_add", "mod_sub", "mod_mul", "poly"):
        cand = dataclasses.replace(config, task=dataclasses.replace(config.task, task=task))
        tokens, labels = all_pairs(cand.task)
        with torch.inference_mode():
            pred = last_logits(weights, tokens[:, 0], tokens[:, 1], cand.model).argmax(-1)
        acc = float((pred == labels).double().mean())
        if acc > best_acc:
            best, best_acc = cand, acc
    return best
