"""The run store: the only module that touches the disk for runs.

One folder per run under the runs directory (``./runs``, or ``$GROK_TUI_RUNS_DIR``, or
``--runs-dir``)::

    runs/<run id>/config.json                  RunConfig.to_dict() (+ "id", "created", "source")
                  split.safetensors            train_indices, test_indices (int64)
                  metrics.safetensors          epoch, train/test loss and accuracy per epoch
                  resume/epoch_000100.safetensors  optimizer moments (+ Grokfast EMA) at the
                                               last checkpoint (the previous one is kept until
                                               the new one is on disk)
                  checkpoints/epoch_000100.safetensors   weights, HookedTransformer keys
                  analysis/                    caches of the studies (progress measures)
                  diverged.json                {"epoch": E, "reason": ...} if training stopped
                                               on a non-finite loss or weight (metrics reach E,
                                               checkpoints end at the last good one)
                  .lock                        the trainer's flock and pid (grok_engine.run_lock)

Every file is written to a temporary file in the same folder, flushed, fsynced and then
renamed over its name, so a SIGKILL at any moment leaves either the old file or the new
one, never half of one, with the mode a plain ``open`` gives (0o666 less the umask).
The temporary files a SIGKILL leaves are removed by the next trainer to take the run's
lock (``Run.lock``): one trainer per run, a second is refused. Metrics and the resume
state are written right after the checkpoint they belong to; a run therefore always loads with every checkpoint written so
far, and a resume starts from the last one. A truncated or corrupt checkpoint is reported
by name (:class:`CorruptCheckpoint`) without stopping the others, or other runs, from
loading.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import threading
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import save_file
from safetensors.torch import load_file

from grok_engine.atomic import atomic_write, atomic_write_bytes
from grok_engine.config import RunConfig
from grok_engine.errors import CorruptCheckpoint, GrokError, describe_os_error, os_error
from grok_engine.paths import check_run_id, default_runs_dir, is_child_name
from grok_engine.run_lock import RunLock
from grok_engine.tasks import Dataset, all_pairs
from grok_engine.train import METRIC_NAMES, Checkpoint, Diverged, Event, Metrics, Progress
from grok_engine.weights import check_weights, is_bias, param_shapes

CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")
DIVERGED_NAME = "diverged.json"

# config.json keys beside the RunConfig sections: who made the run (a sweep member also
# has "sweep": {"id": sweep id, "values": {flag: value}})
INFO_KEYS = ("id", "created", "source", "sweep")

def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor | np.ndarray],
                        metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (torch CPU tensors or numpy arrays) as one safetensors file,
    atomically. It runs no torch op on CPU tensors: the checkpoint writer's thread calls it,
    and a torch op there gives that thread an OpenMP team of its own. libgomp then sees more
    threads than cores and stops spinning at its barriers, so the trainer's every parallel
    op sleeps and wakes on a futex: ~230 context switches and ~10 ms per p=113 epoch on 2
    cores (measured on the AMD EPYC, `grok-tui train`, 200 epochs)."""
    arrays = {k: np.ascontiguousarray(_as_numpy(v)) for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))


def _as_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    value = value.detach()
    return (value if value.device.type == "cpu" else value.cpu()).numpy()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _why_unopenable(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be opened. safetensors reports every failure to open as "No
    such file or directory" (no errno): ask the OS what it was (permission denied, ...)."""
    if exc.errno is None:
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as real:
            return describe_os_error(real)
    return describe_os_error(exc)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; CorruptCheckpoint says whether the file is
    missing, not readable (permissions, a folder) or corrupt."""
    try:
        return load_file(str(path))
    except OSError as exc:
        raise CorruptCheckpoint(f"{path} cannot be read: {_why_unopenable(path, exc)}") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpoint(f"{path} is corrupt ({_first_line(exc)})") from None


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """key -> shape from a safetensors file's header, without reading its data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except OSError as exc:
        raise CorruptCheckpoint(f"{path} cannot be read: {_why_unopenable(path, exc)}") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpoint(f"{path} is corrupt ({_first_line(exc)})") from None


def metrics_from_tensors(tensors: dict[str, torch.Tensor], path: Path) -> Metrics:
    """Metrics from a metrics file's tensors, refused (naming ``path``) unless every column
    is there, 1-D and of one length, and the epochs count 1, 2, ..., n."""
    names = ("epoch",) + METRIC_NAMES
    missing = [n for n in names if n not in tensors]
    if missing:
        raise GrokError(f"{path} is corrupt: it lacks {', '.join(missing)}")
    for name in names:
        if tensors[name].ndim != 1:
            raise GrokError(f"{path} is corrupt: {name} has shape {tuple(tensors[name].shape)}, "
                            f"expected one value per epoch")
    lengths = {n: len(tensors[n]) for n in names}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{n} {k}" for n, k in lengths.items())
        raise GrokError(f"{path} is corrupt: its columns differ in length ({shown})")
    epoch = tensors["epoch"]
    if epoch.is_floating_point() or not torch.equal(epoch.long(), torch.arange(1, len(epoch) + 1)):
        raise GrokError(f"{path} is corrupt: its epochs are not 1, 2, ..., {len(epoch)}")
    # as saved (int64 epochs, float64 values): no copies
    return Metrics(epoch.long().numpy(), *(tensors[n].double().numpy() for n in METRIC_NAMES))


def check_split(train: torch.Tensor, test: torch.Tensor, n_rows: int, where: str) -> None:
    """Refuse a split unless train and test are 1-D integer row numbers, both non-empty,
    that together cover rows 0..n_rows-1 once each."""
    for name, t in (("train_indices", train), ("test_indices", test)):
        if t.ndim != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise GrokError(f"{where}: {name} is not a list of row numbers "
                            f"(dtype {t.dtype}, shape {tuple(t.shape)})")
        if len(t) == 0:
            raise GrokError(f"{where}: {name} is empty")
    rows = torch.cat([train.long(), test.long()])
    if len(rows) != n_rows or not torch.equal(rows.sort().values, torch.arange(n_rows)):
        raise GrokError(f"{where}: train ({len(train)}) and test ({len(test)}) rows do not cover "
                        f"the {n_rows} rows of the task once each")


def resume_layout(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """The trainer's optimizer parameters (frozen biases left out) and their shapes."""
    freeze = config.train.freeze_biases
    return {name: shape for name, shape in param_shapes(config.task, config.model)
            if not (freeze and is_bias(name))}


def check_resume(shapes: dict[str, tuple[int, ...]], config: RunConfig, epoch: int, path: Path) -> None:
    """Refuse a resume state (key -> shape) that the trainer cannot continue from: a state
    with a ``step`` needs both AdamW moments of every trained parameter, shaped like it."""
    if "epoch" in shapes and shapes["epoch"] not in ((), (1,)):
        raise GrokError(f"{path} is corrupt: epoch has shape {shapes['epoch']}")
    if "step" not in shapes:
        return  # no optimizer state (an imported run): the optimizer starts fresh
    if shapes["step"] not in ((), (1,)):
        raise GrokError(f"{path} is corrupt: step has shape {shapes['step']}")
    for name, shape in resume_layout(config).items():
        for key in (f"exp_avg/{name}", f"exp_avg_sq/{name}"):
            if key not in shapes:
                raise GrokError(f"{path} is corrupt: it lacks {key}")
            if shapes[key] != shape:
                raise GrokError(f"{path} is corrupt: {key} has shape {shapes[key]}, expected {shape}")
        ema = f"grokfast_ema/{name}"
        if ema in shapes and shapes[ema] != shape:
            raise GrokError(f"{path} is corrupt: {ema} has shape {shapes[ema]}, expected {shape}")


def with_buffers(weights: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Add HookedTransformer's attention buffers so the file loads strictly there too."""
    out = dict(weights)
    for layer in range(n_layers):
        # built by numpy: no torch op on the writer's thread (atomic_save_tensors says why)
        out[f"blocks.{layer}.attn.mask"] = torch.from_numpy(np.tril(np.ones((3, 3), dtype=bool)))
        out[f"blocks.{layer}.attn.IGNORE"] = torch.from_numpy(np.array(-np.inf, dtype=np.float32))
    return out


def strip_buffers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith((".mask", ".IGNORE"))}


@dataclass
class RunSummary:
    """One row of ``grok-tui runs`` and of the TUI's run picker."""

    id: str
    task: str
    p: int
    epochs_done: int
    epochs_planned: int
    train_acc: float
    test_acc: float
    grok_epoch: int | None  # first epoch with test accuracy >= 99%
    created: str
    error: str | None = None
    diverged_epoch: int | None = None  # training stopped there on a non-finite loss/weight
    sweep: str | None = None  # the id of the sweep the run is a member of


class Run:
    """One run folder. Cheap to open: checkpoints and metrics load on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        config_path = self.path / "config.json"
        try:
            raw = json.loads(config_path.read_bytes())
        except FileNotFoundError:
            raise GrokError(f"run {self.id!r} has no config.json in {self.path}") from None
        except OSError as exc:
            raise os_error(f"{config_path} cannot be read", exc) from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit int
            raise GrokError(f"{config_path} is not valid JSON ({_first_line(exc)})") from None
        if not isinstance(raw, dict):
            raise GrokError(f"{config_path} holds a {type(raw).__name__}, not a run's config")
        self.info = {k: raw.pop(k) for k in INFO_KEYS if k in raw}
        try:
            self.config = RunConfig.from_dict(raw)
        except GrokError as exc:
            raise GrokError(f"{config_path}: {exc}") from None
        self._dataset: Dataset | None = None

    # -- reading ---------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch_{epoch:06d}.safetensors"

    def checkpoint_epochs(self) -> list[int]:
        """Epochs of every checkpoint file present, ascending (epoch 0 = initial weights)."""
        if not self.checkpoint_dir.is_dir():
            return []
        epochs = []
        for entry in _listdir(self.checkpoint_dir):
            match = CHECKPOINT_RE.match(entry)
            if match:
                epochs.append(int(match.group(1)))
        return sorted(epochs)

    def load_checkpoint(self, epoch: int) -> dict[str, torch.Tensor]:
        """Weights after ``epoch`` epochs, HookedTransformer keys (buffers stripped)."""
        path = self.checkpoint_path(epoch)
        if not path.exists():
            have = self.checkpoint_epochs()
            shown = ", ".join(map(str, have[:8])) + (" ..." if len(have) > 8 else "")
            raise GrokError(f"checkpoint epoch={epoch} does not exist in run {self.id}: "
                            f"have {shown or 'none'}")
        weights = strip_buffers(_load_tensors(path))
        try:
            check_weights(weights, self.config.task, self.config.model)
        except ValueError as exc:
            raise CorruptCheckpoint(f"{path} does not fit the run's config ({exc})") from None
        bad = [k for k, v in weights.items() if not v.is_floating_point()]
        if bad:
            raise CorruptCheckpoint(f"{path} is corrupt: {bad[0]} holds {weights[bad[0]].dtype}, "
                                    f"not floats")
        return weights

    def verify_checkpoints(self) -> list[str]:
        """One message per unreadable checkpoint file (empty when all load)."""
        problems = []
        for epoch in self.checkpoint_epochs():
            try:
                self.load_checkpoint(epoch)
            except CorruptCheckpoint as exc:
                problems.append(str(exc))
        return problems

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.safetensors"

    def metrics(self) -> Metrics:
        """Per-epoch metrics (empty before the first checkpoint); GrokError naming the file
        when it is unreadable, incomplete or inconsistent."""
        path = self.metrics_path
        if not _present(path):
            return Metrics()
        return metrics_from_tensors(_load_tensors(path), path)

    def resume_epochs(self) -> list[int]:
        folder = self.path / "resume"
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for e in _listdir(folder) if (m := CHECKPOINT_RE.match(e)))

    def resume_path(self, epoch: int) -> Path:
        return self.path / "resume" / f"epoch_{epoch:06d}.safetensors"

    def resume_state(self, epoch: int) -> dict[str, torch.Tensor]:
        """The optimizer state saved with checkpoint ``epoch``, checked against the config."""
        path = self.resume_path(epoch)
        state = _load_tensors(path)
        check_resume({k: tuple(v.shape) for k, v in state.items()}, self.config, epoch, path)
        return state

    def dataset(self) -> Dataset:
        """The run's rows and its split as saved (imported runs keep the notebook's)."""
        if self._dataset is None:
            path = self.path / "split.safetensors"
            split = _load_tensors(path)
            missing = [k for k in ("train_indices", "test_indices") if k not in split]
            if missing:
                raise GrokError(f"{path} is corrupt: it lacks {', '.join(missing)}")
            train, test = split["train_indices"], split["test_indices"]
            check_split(train, test, self.config.task.n_rows, f"{path} is corrupt")
            tokens, labels = all_pairs(self.config.task)
            self._dataset = Dataset(self.config.task, tokens, labels, train.long(), test.long())
        return self._dataset

    def diverged(self) -> dict[str, Any] | None:
        """``{"epoch": E, "reason": "..."}`` if training stopped on a non-finite loss or
        weight at epoch E (``diverged.json``), else None."""
        path = self.path / DIVERGED_NAME
        try:
            info = json.loads(path.read_text())
            return {"epoch": int(info["epoch"]), "reason": str(info.get("reason", ""))}
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise GrokError(f"{path} cannot be read: {describe_os_error(exc)}") from None
        except (ValueError, KeyError, TypeError):
            raise GrokError(f"{path} is unreadable (not a JSON object with an epoch)") from None

    def check(self) -> Metrics:
        """Raise GrokError naming the first run file that cannot be read or does not fit:
        the metrics, the split, the newest resume state (its header only). Cheap enough
        for a listing of runs; checkpoints are checked when loaded. Returns the metrics."""
        metrics = self.metrics()
        self.dataset()
        ready = sorted(set(self.checkpoint_epochs()) & set(self.resume_epochs()))
        if ready:
            path = self.resume_path(ready[-1])
            check_resume(_tensor_shapes(path), self.config, ready[-1], path)
        return metrics

    def epochs_done(self) -> int:
        epochs = self.checkpoint_epochs()
        return epochs[-1] if epochs else 0

    def summary(self) -> RunSummary:
        """The run's row in a listing; never raises: a problem goes into ``error``."""
        t = self.config.task
        done = 0
        try:
            done = self.epochs_done()
            m = self.check().truncate(done)
            train_acc = float(m.train_acc[-1]) if len(m) else float("nan")
            test_ok = m.test_acc[~np.isnan(m.test_acc)]
            test_acc = float(test_ok[-1]) if len(test_ok) else float("nan")
            reached = np.nonzero(np.nan_to_num(m.test_acc, nan=0.0) >= 0.99)[0]
            grok = int(m.epoch[reached[0]]) if len(reached) else None
            error = None
            diverged = self.diverged()
        except GrokError as exc:
            train_acc, test_acc, grok, error = float("nan"), float("nan"), None, str(exc)
            diverged = None
        return RunSummary(self.id, t.task, t.p, done, self.config.train.epochs, train_acc,
                          test_acc, grok, str(self.info.get("created", "")), error,
                          diverged["epoch"] if diverged else None, self.sweep_id())

    def sweep_id(self) -> str | None:
        """The sweep this run is a member of (config.json's "sweep": {"id": ...}), or None."""
        sweep = self.info.get("sweep")
        return str(sweep["id"]) if isinstance(sweep, dict) and "id" in sweep else None

    def load_analysis(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """A cached analysis (tensors, metadata) beside the run, or None if absent/corrupt."""
        from safetensors import safe_open

        path = self.path / "analysis" / f"{name}.safetensors"
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None  # a cache: recompute rather than fail

    def save_analysis(self, name: str, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> bool:
        """Cache an analysis beside the run; best-effort: False when the run folder cannot
        be written (read-only, full), since the analysis can always be recomputed."""
        try:
            atomic_save_tensors(self.path / "analysis" / f"{name}.safetensors", tensors, metadata)
        except OSError:
            return False
        return True

    # -- writing ---------------------------------------------------------------------
    def lock(self) -> RunLock:
        """The run's write lock (``.lock``; one trainer per run), taken now; clears the
        temporary files of killed writes. Raises :class:`~grok_engine.run_lock.RunLocked`
        naming the process that holds it. Release it (or use ``with``) when done."""
        return RunLock.acquire(self.path, self.id)

    def write_checkpoint(self, event: Checkpoint) -> None:
        """Weights, then metrics, then the resume state; older resume states go last. A
        SIGKILL anywhere leaves a (checkpoint, resume state) pair to continue from, with
        metrics reaching at least its epoch (a resume truncates any surplus), or, killed
        within the first (epoch 0), the init's weights alone: :meth:`trainer` starts afresh."""
        meta = {"epoch": str(event.epoch), "format": "HookedTransformer state_dict"}
        atomic_save_tensors(self.checkpoint_path(event.epoch),
                            with_buffers(event.weights, self.config.model.n_layers), meta)
        self.write_metrics(event.metrics)
        atomic_save_tensors(self.path / "resume" / f"epoch_{event.epoch:06d}.safetensors",
                            event.resume)
        for old in self.resume_epochs():
            if old < event.epoch:
                (self.path / "resume" / f"epoch_{old:06d}.safetensors").unlink(missing_ok=True)

    def write_diverged(self, event: Diverged) -> None:
        """The metrics up to the diverged epoch, then the mark ``diverged.json``."""
        self.write_metrics(event.metrics)
        atomic_write_bytes(self.path / DIVERGED_NAME,
                           json.dumps({"epoch": event.epoch, "reason": event.reason}).encode())

    def write_metrics(self, metrics: Metrics) -> None:
        atomic_save_tensors(self.path / "metrics.safetensors", metrics.as_dict())

    def __call__(self, event: Event) -> None:
        """A trainer listener: persist every checkpoint."""
        if isinstance(event, Checkpoint):
            self.write_checkpoint(event)
        elif isinstance(event, Diverged):
            self.write_diverged(event)
        elif not isinstance(event, Progress):  # pragma: no cover - future event types
            raise TypeError(type(event))

    def trainer(self, device: str | None = None):
        """A Trainer positioned at this run's newest (checkpoint, resume state) pair (fresh
        when it has none), on ``device`` (default: the config's). ``write_checkpoint``'s
        order means metrics reach that epoch; if they do not (files copied by hand), the
        missing epochs are NaN, never a gap."""
        from grok_engine.train import Trainer

        diverged = self.diverged()
        if diverged is not None:
            raise GrokError(f"run {self.id} diverged at epoch {diverged['epoch']} ({diverged['reason']}): "
                            f"resuming would repeat it; train a new run (e.g. a lower lr)")
        config = self.config if device is None else self.config.replace(device=device)
        ds = self.dataset()
        ready = sorted(set(self.checkpoint_epochs()) & set(self.resume_epochs()))
        if not ready:
            imported = str(self.info.get("source", "")).startswith("import")
            # Only the init's checkpoint and no resume state: killed between the run's first
            # two writes (the writer's order puts every later file after that resume
            # state), so nothing was trained yet; a fresh Trainer is the same init (the
            # config's seed) and writes both again.
            if self.checkpoint_epochs() not in ([], [0]) or (imported and self.checkpoint_epochs()):
                raise GrokError(f"run {self.id} cannot resume: no checkpoint has its optimizer "
                                f"state in {self.path / 'resume'}")
            if imported:
                # a half-made import: training it would start from fresh weights
                raise GrokError(f"run {self.id} was imported without its checkpoints (an "
                                f"unfinished import): remove {self.path} and import again")
            return Trainer(config, dataset=ds)
        last = ready[-1]
        return Trainer(config, weights=self.load_checkpoint(last),
                       resume=self.resume_state(last), metrics=self.metrics().truncate(last).pad_to(last),
                       epoch=last, dataset=ds)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise os_error(f"cannot list {folder}", exc) from None


def _present(path: Path) -> bool:
    """Whether ``path`` exists; a path that cannot be looked at counts as present, so that
    reading it reports why (permission denied) instead of passing it over as missing."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _config_state(run_dir: Path) -> str:
    """"run" (a folder with config.json), "unreadable" (cannot tell) or "absent"."""
    try:
        if not run_dir.is_dir():
            return "absent"
        (run_dir / "config.json").stat()
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    except OSError:
        return "unreadable"
    return "run"


class AsyncWriter:
    """A trainer listener that persists checkpoints on a background thread, in order, so the
    training loop never waits on the disk (each file is still written atomically). It holds
    at most :meth:`slots_for` checkpoints at once (queued or being written): a slow disk
    makes training wait instead of filling memory, and a large model gets fewer slots. A
    write error is raised in the training thread at the next event, or at :meth:`close`.

    >>> with AsyncWriter(run) as writer:        # doctest: +SKIP
    ...     trainer.run(callback=writer)
    """

    PENDING_BYTES = 64 << 20  # of checkpoints held at once, unless one alone is larger

    def __init__(self, run: Run, max_pending: int = 8):
        import queue

        self.run = run
        self.max_pending = max_pending
        self._queue: "queue.Queue[Checkpoint | Diverged | None]" = queue.Queue()
        self._held = 0
        self._room = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"writer-{run.id}", daemon=True)
        self._thread.start()

    @classmethod
    def slots_for(cls, event_bytes: int, max_pending: int = 8) -> int:
        """How many checkpoints of ``event_bytes`` the writer holds at once: ``max_pending``,
        fewer when they are large, never less than one."""
        return max(1, min(max_pending, cls.PENDING_BYTES // max(1, event_bytes)))

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            if self._error is None:
                try:
                    self.run(event)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the trainer's thread
                    self._error = exc
            with self._room:
                self._held -= 1
                self._room.notify()

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise GrokError(f"cannot write run {self.run.id} in {self.run.path}: {exc}") from exc

    def __call__(self, event: Event) -> None:
        self._raise()
        if isinstance(event, (Checkpoint, Diverged)):
            slots = self.slots_for(_event_bytes(event), self.max_pending)
            with self._room:
                while self._held >= slots:
                    self._room.wait()
                self._held += 1
            self._queue.put(event)

    def close(self) -> None:
        """Wait until every queued checkpoint is on disk."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self) -> "AsyncWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _event_bytes(event: Checkpoint | Diverged) -> int:
    """Bytes of the tensors a checkpoint event holds (a Diverged event: its metrics only)."""
    if isinstance(event, Diverged):
        return sum(v.nbytes for v in event.metrics.as_dict().values())
    return sum(t.numel() * t.element_size() for part in (event.weights, event.resume)
               for t in part.values())


class RunStore:
    """All runs under one directory."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()

    def run_ids(self) -> list[str]:
        """Folders of the runs folder that hold a config.json, or that cannot be looked
        into (listed, so that opening one says why it cannot be read)."""
        if not self.root.is_dir():
            return []
        return sorted(name for name in _listdir(self.root)
                      if not name.startswith(".") and _config_state(self.root / name) != "absent")

    def open(self, run_id: str) -> Run:
        path = self.root / run_id
        if not is_child_name(run_id) or _config_state(path) == "absent":
            have = self.run_ids() if self.root.is_dir() else []
            shown = ", ".join(have[:10]) + (" ..." if len(have) > 10 else "")
            raise GrokError(f"run {run_id!r} does not exist in {self.root}: "
                            f"have {shown or 'no runs'}")
        return Run(path)

    def extend_epochs(self, run: Run, epochs: int) -> Run:
        """Change a run's planned epochs (to continue training it further), under its lock:
        refused while another process trains it."""
        with run.lock():
            config = Run(run.path).config.replace(epochs=epochs)
            atomic_write_bytes(run.path / "config.json",
                               json.dumps({**run.info, **config.to_dict()}, indent=2).encode())
        return Run(run.path)

    def summaries(self) -> list[RunSummary]:
        """One row per run; a run that cannot be read is a row with ``error`` set, so one
        bad run never hides the others."""
        out = []
        for run_id in self.run_ids():
            try:
                out.append(self.open(run_id).summary())
            except GrokError as exc:
                out.append(RunSummary(run_id, "?", 0, 0, 0, float("nan"), float("nan"), None, "",
                                      str(exc)))
        return out

    def new_id(self, config: RunConfig) -> str:
        t = config.task
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{t.task}-p{t.p}-{stamp}"
        run_id, n = base, 1
        while (self.root / run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def create(self, config: RunConfig, run_id: str | None = None, source: str = "train",
               split: tuple[torch.Tensor, torch.Tensor] | None = None,
               extra_info: dict[str, Any] | None = None) -> Run:
        """A new run folder with its config and split (the config's split by default);
        ``extra_info``: more keys for config.json (of INFO_KEYS: a sweep member's "sweep")."""
        unknown = set(extra_info or ()) - set(INFO_KEYS)
        if unknown:
            raise ValueError(f"config.json info keys {sorted(unknown)} are not in INFO_KEYS")
        run_id = run_id or self.new_id(config)
        check_run_id(run_id)
        path = self.root / run_id
        if path.exists():
            raise GrokError(f"run {run_id!r} already exists in {self.root}")
        if split is None:
            from grok_engine.tasks import split_indices

            split = split_indices(config.task)
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise os_error(f"cannot create the run folder {path}", exc) from None
        info: dict[str, Any] = {"id": run_id, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                                "source": source, **(extra_info or {})}
        try:
            atomic_save_tensors(path / "split.safetensors",
                                {"train_indices": split[0].long(), "test_indices": split[1].long()})
            # config.json last: a folder without it is not (yet) a run
            atomic_write_bytes(path / "config.json",
                               json.dumps({**info, **config.to_dict()}, indent=2).encode())
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)  # no half-made run left behind
            raise os_error(f"cannot write the run folder {path}", exc) from None
        return Run(path)
