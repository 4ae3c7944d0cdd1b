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
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from grok_engine.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from grok_engine.errors import GrokError, os_error
from grok_engine.paths import check_run_id
from grok_engine.store import Run, RunStore, check_split, strip_buffers
from grok_engine.tasks import all_pairs
from grok_engine.train import Checkpoint, Metrics
from grok_engine.weights import check_weights

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


# Sentences of torch's refusal that advise loading the file unsafely or allow-listing what
# it asks for: never repeated to the user.
_UNSAFE_ADVICE = re.compile(r"weights_only|trusted source|file an issue|documentation|safe_globals|"
                            r"allowlist|Weights only load failed", re.IGNORECASE)


def refusal_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one short line, without
    torch's advice to retry with ``weights_only=False`` or to allow-list a global."""
    text = str(exc)
    wanted = re.search(r"GLOBAL ([\w.]+)", text)
    if wanted:
        return (f"it asks for {wanted.group(1)}, which is never loaded: only tensors, plain "
                f"containers and the notebook's config are")
    kept = []
    for line in text.splitlines():
        line = line.split("WeightsUnpickler error:")[-1].strip()
        if line and not _UNSAFE_ADVICE.search(line):
            kept.append(line)
    return " ".join(kept)[:160] or type(exc).__name__


def load_notebook_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol warnings: not the user's
            with torch.serialization.safe_globals(_safe_globals()):
                data = torch.load(fh, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise os_error(f"FILE {str(path)!r}", exc) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
        raise GrokError(f"{path} is not a notebook save file that loads safely "
                        f"({refusal_reason(exc)})") from None
    if not isinstance(data, dict):
        raise GrokError(f"{path} holds a {type(data).__name__}, not the notebook's dict")
    missing = [k for k in ("model", "config", "checkpoints", "checkpoint_epochs", "train_indices",
                           "test_indices") if k not in data]
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


def _indices(data: dict, key: str, path: Path) -> torch.Tensor:
    try:
        t = torch.as_tensor(data[key])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise GrokError(f"{path}: {key} is not a list of row numbers ({_first(exc)})") from None
    if t.ndim != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise GrokError(f"{path}: {key} is not a list of row numbers "
                        f"(dtype {t.dtype}, shape {tuple(t.shape)})")
    return t.long()


def _losses(data: dict, key: str, path: Path) -> np.ndarray:
    try:
        values = np.asarray(data.get(key, []), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GrokError(f"{path}: {key} is not a list of numbers ({_first(exc)})") from None
    if values.ndim != 1:
        raise GrokError(f"{path}: {key} has shape {values.shape}, expected one loss per epoch")
    return values


def _checkpoint_epochs(data: dict, n_epochs: int, path: Path) -> list[int]:
    """The notebook's 0-based checkpoint epochs as our epochs (1-based: weights after the
    step), refused unless they are integers, increasing, one per state, within the run."""
    raw, states = data["checkpoint_epochs"], data["checkpoints"]
    if not isinstance(states, (list, tuple)):
        raise GrokError(f"{path}: checkpoints is a {type(states).__name__}, not a list of state dicts")
    try:
        values = [v.item() if isinstance(v, (torch.Tensor, np.generic)) else v for v in raw]
    except (TypeError, ValueError, RuntimeError):
        raise GrokError(f"{path}: checkpoint_epochs is not a list of epochs") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise GrokError(f"{path}: checkpoint_epochs holds {values[:5]!r}..., not whole epochs")
    epochs = [v + 1 for v in values]
    if len(epochs) != len(states):
        raise GrokError(f"{path}: {len(epochs)} checkpoint_epochs for {len(states)} checkpoints")
    if any(e < 1 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise GrokError(f"{path}: checkpoint_epochs {values[:8]!r} are not increasing epochs >= 0")
    if n_epochs and epochs and epochs[-1] > n_epochs:
        raise GrokError(f"{path}: checkpoint epoch {values[-1]} is past the {n_epochs} epochs "
                        f"of train_losses")
    return epochs


def _state(state: object, config: RunConfig, what: str, path: Path) -> dict[str, torch.Tensor]:
    """A state dict of the file as float weights of ``config``'s model, or GrokError."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GrokError(f"{path}: {what} is not a state dict of tensors")
    weights = strip_buffers(state)
    try:
        check_weights(weights, config.task, config.model)
    except ValueError as exc:
        raise GrokError(f"{path}: {what} does not fit the file's config ({exc})") from None
    if not all(v.is_floating_point() for v in weights.values()):
        raise GrokError(f"{path}: {what} holds weights that are not floats")
    return {k: v.float() for k, v in weights.items()}


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]


def import_notebook(path: str | Path, store: RunStore, run_id: str | None = None) -> Run:
    """Turn the notebook's save file into a run; returns it. Every part of the file is
    checked before anything is written, and the run is assembled in a hidden folder of
    the runs folder and renamed into place: a bad file or a crash leaves no half-made run."""
    path = Path(path)
    if run_id is not None:
        check_run_id(run_id)
        if (store.root / run_id).exists():
            raise GrokError(f"run {run_id!r} already exists in {store.root}")
    data = load_notebook_file(path)
    train_idx = _indices(data, "train_indices", path)
    test_idx = _indices(data, "test_indices", path)
    train_losses = _losses(data, "train_losses", path)
    test_losses = _losses(data, "test_losses", path)
    if len(test_losses) > len(train_losses):
        raise GrokError(f"{path}: {len(test_losses)} test_losses for {len(train_losses)} train_losses")
    final_epoch = len(train_losses)
    ckpt_epochs = _checkpoint_epochs(data, final_epoch, path)
    every = ckpt_epochs[0] if ckpt_epochs else max(1, final_epoch)
    try:
        config = config_from_notebook(data["config"], train_idx, final_epoch, every)
    except (TypeError, ValueError) as exc:  # GrokError is a ValueError: keep its text
        message = str(exc) if isinstance(exc, GrokError) else f"a field does not fit ({_first(exc)})"
        raise GrokError(f"{path}: the file's config: {message}") from None
    final_weights = _state(data["model"], config, "model", path)
    config = _guess_task(config, final_weights)
    check_split(train_idx, test_idx, config.task.n_rows, f"{path}: train/test indices")
    states = [(e, _state(s, config, f"checkpoint {e - 1}", path)) for e, s in zip(ckpt_epochs, data["checkpoints"])]
    if final_epoch and (not ckpt_epochs or ckpt_epochs[-1] != final_epoch):
        states.append((final_epoch, final_weights))

    run_id = run_id or store.new_id(config).replace("-p", "-nb-p", 1)
    staging = store.root / f".import-{os.getpid()}-{run_id}"
    try:
        run = RunStore(staging).create(config, run_id=run_id, source=f"import:{path.name}",
                                       split=(train_idx, test_idx))
        _write_run(run, config, states, train_losses, test_losses, (train_idx, test_idx))
        target = store.root / run_id
        try:
            os.rename(run.path, target)  # atomic; refuses a folder made meanwhile under that id
        except OSError as exc:
            raise os_error(f"cannot move the imported run to {target}", exc) from None
    except OSError as exc:
        raise os_error(f"cannot write the imported run in {store.root}", exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Run(target)


def _write_run(run: Run, config: RunConfig, states: list[tuple[int, dict[str, torch.Tensor]]],
               train_losses: np.ndarray, test_losses: np.ndarray,
               split: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Checkpoints (with the accuracy the notebook does not record) and metrics."""
    metrics = _metrics_from_losses(train_losses, test_losses)
    for epoch, weights in states:
        if 1 <= epoch <= len(metrics):  # accuracy at each checkpoint (the notebook has none)
            metrics.train_acc[epoch - 1], metrics.test_acc[epoch - 1] = _accuracies(config, weights, split)
    for epoch, weights in states:
        run.write_checkpoint(Checkpoint(epoch, weights, {"epoch": torch.tensor(epoch)},
                                        metrics.truncate(epoch)))
    run.write_metrics(metrics)


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
