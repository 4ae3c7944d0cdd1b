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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from grok_engine.config import RunConfig
from grok_engine.errors import CorruptCheckpoint, GrokError, describe_os_error
from grok_engine.run_lock import RunLock
from grok_engine.tasks import Dataset, all_pairs
from grok_engine.train import METRIC_NAMES, Checkpoint, Diverged, Event, Metrics, Progress
from grok_engine.weights import check_weights

RUNS_DIR_ENV = "GROK_TUI_RUNS_DIR"
CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DIVERGED_NAME = "diverged.json"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


_umask: int | None = None
_umask_guard = threading.Lock()


def process_umask() -> int:
    """This process's umask, read once without changing it where Linux tells it
    (``/proc/self/status``); elsewhere set and restored once, under a lock."""
    global _umask
    with _umask_guard:
        if _umask is None:
            try:
                with open("/proc/self/status") as fh:
                    _umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
            except (OSError, StopIteration, ValueError, IndexError):
                _umask = os.umask(0o022)
                os.umask(_umask)
        return _umask


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path`` (same folder). The file
    gets the mode a plain ``open`` would give it (0o666 less the umask): safetensors
    creates its files 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~process_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except OSError:
        # safetensors reports every failure to open as "No such file or directory": ask
        # the OS what it was (permission denied, a folder, ...)
        raise CorruptCheckpoint(f"{path} cannot be read: {_why_unopenable(path)}") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpoint(f"{path} is unreadable ({str(exc).splitlines()[0][:120]})") from None


def _why_unopenable(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return describe_os_error(exc)
    return "the file system refused it"


def with_buffers(weights: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Add HookedTransformer's attention buffers so the file loads strictly there too."""
    out = dict(weights)
    for layer in range(n_layers):
        out[f"blocks.{layer}.attn.mask"] = torch.tril(torch.ones(3, 3, dtype=torch.bool))
        out[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-torch.inf)
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


class Run:
    """One run folder. Cheap to open: checkpoints and metrics load on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        config_path = self.path / "config.json"
        try:
            raw = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise GrokError(f"run {self.id!r} has no config.json in {self.path}") from None
        except OSError as exc:
            raise GrokError(f"{config_path} cannot be read: {describe_os_error(exc)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GrokError(f"{config_path} is unreadable ({exc})") from None
        self.info = {k: raw.pop(k) for k in ("id", "created", "source") if k in raw}
        self.config = RunConfig.from_dict(raw)
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
        for entry in os.listdir(self.checkpoint_dir):
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

    def metrics(self) -> Metrics:
        path = self.path / "metrics.safetensors"
        if not path.exists():
            return Metrics()
        tensors = _load_tensors(path)
        return Metrics(**{k: tensors[k].numpy() for k in ("epoch",) + METRIC_NAMES})

    def resume_epochs(self) -> list[int]:
        folder = self.path / "resume"
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for e in os.listdir(folder) if (m := CHECKPOINT_RE.match(e)))

    def resume_state(self, epoch: int) -> dict[str, torch.Tensor]:
        return _load_tensors(self.path / "resume" / f"epoch_{epoch:06d}.safetensors")

    def dataset(self) -> Dataset:
        """The run's rows and its split as saved (imported runs keep the notebook's)."""
        if self._dataset is None:
            tokens, labels = all_pairs(self.config.task)
            split = _load_tensors(self.path / "split.safetensors")
            self._dataset = Dataset(self.config.task, tokens, labels,
                                    split["train_indices"].long(), split["test_indices"].long())
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

    def epochs_done(self) -> int:
        epochs = self.checkpoint_epochs()
        return epochs[-1] if epochs else 0

    def summary(self) -> RunSummary:
        t = self.config.task
        try:
            m = self.metrics()
            done = self.epochs_done()
            m = m.truncate(done)
            train_acc = float(m.train_acc[-1]) if len(m) else float("nan")
            test_ok = m.test_acc[~np.isnan(m.test_acc)]
            test_acc = float(test_ok[-1]) if len(test_ok) else float("nan")
            reached = np.nonzero(np.nan_to_num(m.test_acc, nan=0.0) >= 0.99)[0]
            grok = int(m.epoch[reached[0]]) if len(reached) else None
            error = None
            diverged = self.diverged()
        except GrokError as exc:
            done, train_acc, test_acc, grok, error = self.epochs_done(), float("nan"), float("nan"), None, str(exc)
            diverged = None
        return RunSummary(self.id, t.task, t.p, done, self.config.train.epochs, train_acc,
                          test_acc, grok, str(self.info.get("created", "")), error,
                          diverged["epoch"] if diverged else None)

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
                      metadata: dict[str, str] | None = None) -> None:
        atomic_save_tensors(self.path / "analysis" / f"{name}.safetensors", tensors, metadata)

    # -- writing ---------------------------------------------------------------------
    def lock(self) -> RunLock:
        """The run's write lock (``.lock``; one trainer per run), taken now; clears the
        temporary files of killed writes. Raises :class:`~grok_engine.run_lock.RunLocked`
        naming the process that holds it. Release it (or use ``with``) when done."""
        return RunLock.acquire(self.path, self.id)

    def write_checkpoint(self, event: Checkpoint) -> None:
        """Weights, then metrics, then the resume state; older resume states go last. A
        SIGKILL anywhere leaves a (checkpoint, resume state) pair to continue from, with
        metrics reaching at least its epoch (a resume truncates any surplus)."""
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
        atomic_save_tensors(self.path / "metrics.safetensors",
                            {k: torch.from_numpy(np.ascontiguousarray(v))
                             for k, v in metrics.as_dict().items()})

    def __call__(self, event: Event) -> None:
        """A trainer listener: persist every checkpoint."""
        if isinstance(event, Checkpoint):
            self.write_checkpoint(event)
        elif isinstance(event, Diverged):
            self.write_diverged(event)
        elif not isinstance(event, Progress):  # pragma: no cover - future event types
            raise TypeError(type(event))

    def trainer(self):
        """A Trainer positioned at this run's newest (checkpoint, resume state) pair (fresh
        when it has none). ``write_checkpoint``'s order means metrics reach that epoch; if
        they do not (files copied by hand), the missing epochs are NaN, never a gap."""
        from grok_engine.train import Trainer

        diverged = self.diverged()
        if diverged is not None:
            raise GrokError(f"run {self.id} diverged at epoch {diverged['epoch']} ({diverged['reason']}): "
                            f"resuming would repeat it; train a new run (e.g. a lower lr)")
        ds = self.dataset()
        ready = sorted(set(self.checkpoint_epochs()) & set(self.resume_epochs()))
        if not ready:
            if self.checkpoint_epochs():
                raise GrokError(f"run {self.id} cannot resume: no checkpoint has its optimizer "
                                f"state in {self.path / 'resume'}")
            return Trainer(self.config, dataset=ds)
        last = ready[-1]
        return Trainer(self.config, weights=self.load_checkpoint(last),
                       resume=self.resume_state(last), metrics=self.metrics().truncate(last).pad_to(last),
                       epoch=last, dataset=ds)


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
        if not self.root.is_dir():
            return []
        return sorted(e.name for e in self.root.iterdir()
                      if e.is_dir() and (e / "config.json").exists())

    def open(self, run_id: str) -> Run:
        path = self.root / run_id
        try:
            present = bool(RUN_ID_RE.match(run_id)) and (path / "config.json").exists()
        except OSError as exc:  # a folder we may not enter: say so, not "does not exist"
            raise GrokError(f"run {run_id!r} in {self.root} cannot be read: {describe_os_error(exc)}") from None
        if not present:
            have = self.run_ids()
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
               split: tuple[torch.Tensor, torch.Tensor] | None = None) -> Run:
        """A new run folder with its config and split (the config's split by default)."""
        run_id = run_id or self.new_id(config)
        if not RUN_ID_RE.match(run_id):
            raise GrokError(f"run id {run_id!r} is not allowed: letters, digits, '.', '_', '-'")
        path = self.root / run_id
        if path.exists():
            raise GrokError(f"run {run_id!r} already exists in {self.root}")
        if split is None:
            from grok_engine.tasks import split_indices

            split = split_indices(config.task)
        path.mkdir(parents=True)
        atomic_save_tensors(path / "split.safetensors",
                            {"train_indices": split[0].long(), "test_indices": split[1].long()})
        info: dict[str, Any] = {"id": run_id, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                                "source": source}
        # config.json last: a folder without it is not (yet) a run
        atomic_write_bytes(path / "config.json",
                           json.dumps({**info, **config.to_dict()}, indent=2).encode())
        return Run(path)
