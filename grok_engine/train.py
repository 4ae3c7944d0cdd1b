"""The full-batch trainer: the notebook's loop, without its overheads.

Semantics are the notebook's: AdamW on every trainable parameter (biases frozen by
default), one full-batch step per epoch on the train split, train loss from that step's
forward, test loss from the updated weights, losses in float64 on the last position.

What makes it fast: the forward is ``grok_engine.fast`` (last position only, layer-0
keys/values per token), and for the notebook's 1-layer model at small p on the CPU
``grok_engine.numpy_pass`` (a numpy forward and hand-derived backward) replaces torch and
autograd; all trainable parameters live in one flat tensor so AdamW and the Grokfast
filter are a handful of vector ops per epoch; on a GPU the per-epoch metrics stay on the
device and reach the host in batches (no sync every epoch).

The trainer never prints and never touches the disk: it reports :class:`Progress` and
:class:`Checkpoint` events to a callback (the run store, the CLI's progress bar and the
TUI are listeners) and stops, after a checkpoint, when ``stop()`` returns True. A loss or
a weight that is not finite stops it with a :class:`Diverged` event instead (see
``_run``), so a run that blew up never ends "done" with NaN weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol

import numpy as np
import torch

from grok_engine import runtime
from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine import one_layer
from grok_engine.numpy_pass import MemberRows, NumpyPass
from grok_engine.fast import accuracy, eval_logits, flush_subnormals, last_logits, loss_fn
from grok_engine.optim import FlatAdamW
from grok_engine.tasks import Dataset, make_dataset
from grok_engine.weights import first_nonfinite, init_weights, is_bias, param_shapes

METRIC_NAMES = ("train_loss", "test_loss", "train_acc", "test_acc")

# Up to this p the hand-written numpy path (``numpy_pass``) beats autograd on the fast
# forward; measured per epoch on a 2-core CPU when its backward ran on the train rows with a
# dense [n, H, 2p] attention matrix, before the forward and the attention's backward ran on
# the grid (sessions 13-16; each made the numpy path faster still): 1.25 vs 2.67 ms at
# p=10, 4.1 vs 4.9 ms at p=23, 6.5 vs 10.9 at p=31, 9.9 vs 9.2 at p=37, 17.9 vs 15.7 at p=47.
MANUAL_MAX_P = 32

# Dense checkpoints, where the action is: on a grid of checkpoint_every // 10 epochs
# (rounded up to a multiple of eval_every) the trainer also checkpoints when the test
# metrics moved quickly over the last grid step: accuracy by more than 2 points (and by
# more than one test example: 14 rows make one 7 points), or the loss by more than a tenth
# of a decade (a factor 1.26). The regular checkpoints alone put two checkpoints in a
# p=113 fast-preset transition.
DENSE_DIVISOR = 10
DENSE_ACC_CHANGE = 0.02
DENSE_LOG10_LOSS_CHANGE = 0.1


def dense_checkpoint_step(checkpoint_every: int, eval_every: int) -> int:
    """Epochs between two dense-checkpoint checks (module comment above); 0 when the
    regular checkpoints are already that dense.

    >>> dense_checkpoint_step(100, 1), dense_checkpoint_step(100, 3), dense_checkpoint_step(5, 1)
    (10, 12, 0)
    """
    step = checkpoint_every // DENSE_DIVISOR
    step = -(-step // eval_every) * eval_every  # every grid epoch has its test metrics
    return step if 0 < step < checkpoint_every else 0


def moved_quickly(before: tuple[float, float], after: tuple[float, float], n_test: int) -> bool:
    """Whether test (loss, accuracy) moved enough between two grid epochs for a dense
    checkpoint, on a test split of ``n_test`` rows. Not finite (a NaN, a loss of 0): no.

    >>> moved_quickly((2.0, 0.50), (1.9, 0.53), 1000), moved_quickly((2.0, 0.5), (1.9, 0.5), 1000)
    (True, False)
    """
    (loss0, acc0), (loss1, acc1) = before, after
    if abs(acc1 - acc0) > max(DENSE_ACC_CHANGE, 1.5 / max(n_test, 1)):  # 1.5: between one row and two
        return True
    if loss0 > 0 and loss1 > 0 and math.isfinite(loss0) and math.isfinite(loss1):
        return abs(math.log10(loss1) - math.log10(loss0)) > DENSE_LOG10_LOSS_CHANGE
    return False


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu (or the one asked for)."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": mps is not None and mps.is_available()}
    if requested != "auto":
        if not available.get(requested, False):
            have = ", ".join(["auto"] + [k for k, ok in available.items() if ok])
            raise GrokError(f"device={requested!r} is not available on this machine: choose {have}")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if available["mps"]:
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Metrics:
    """Per-epoch curves. ``epoch[i]`` counts completed epochs (1-based); test values are
    NaN on epochs that were not evaluated (``eval_every > 1``)."""

    epoch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    train_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.epoch)

    def extend(self, other: "Metrics") -> None:
        for name in ("epoch",) + METRIC_NAMES:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def truncate(self, last_epoch: int) -> "Metrics":
        keep = self.epoch <= last_epoch
        return Metrics(**{n: getattr(self, n)[keep] for n in ("epoch",) + METRIC_NAMES})

    def pad_to(self, last_epoch: int) -> "Metrics":
        """Rows of NaN for the epochs after the last recorded one, up to ``last_epoch``."""
        done = int(self.epoch[-1]) if len(self) else 0
        if done >= last_epoch:
            return self
        missing = np.arange(done + 1, last_epoch + 1, dtype=np.int64)
        nan = np.full(len(missing), np.nan)
        out = Metrics(**{k: v.copy() for k, v in self.as_dict().items()})
        out.extend(Metrics(missing, nan, nan.copy(), nan.copy(), nan.copy()))
        return out

    def as_dict(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in ("epoch",) + METRIC_NAMES}


@dataclass
class Progress:
    """Metrics of the epochs since the last event, and where training stands."""

    metrics: Metrics
    epoch: int  # epochs completed
    target_epoch: int
    elapsed_s: float


@dataclass
class Checkpoint:
    """Weights after ``epoch`` epochs (HookedTransformer format, on the CPU) and what it
    takes to resume from here: optimizer moments, the Grokfast EMA, all metrics so far."""

    epoch: int
    weights: dict[str, torch.Tensor]
    resume: dict[str, torch.Tensor]
    metrics: Metrics


@dataclass
class Diverged:
    """Training stopped at ``epoch``, the first epoch whose loss (train, or test where it
    was evaluated) or whose weights are not finite; ``reason`` says which. ``metrics``: all
    rows so far, up to and including that epoch. No checkpoint is made of those weights:
    the last Checkpoint before this event is the last good one."""

    epoch: int
    reason: str
    metrics: Metrics


Event = Progress | Checkpoint | Diverged
Callback = Callable[[Event], None]


def first_nonfinite_row(chunk: Metrics, evaluated: np.ndarray) -> tuple[int, str] | None:
    """(epoch, reason) of the first row whose train loss, or test loss where ``evaluated``
    (a test loss is NaN by design on the other epochs), is not finite; None if all are."""
    bad_train = ~np.isfinite(chunk.train_loss)
    bad_test = evaluated & ~np.isfinite(chunk.test_loss)
    rows = np.nonzero(bad_train | bad_test)[0]
    if not len(rows):
        return None
    i = int(rows[0])
    which, value = ("train", chunk.train_loss[i]) if bad_train[i] else ("test", chunk.test_loss[i])
    return int(chunk.epoch[i]), f"{which} loss is {value}"


class Stepper(Protocol):
    """The two halves of an epoch, by one algorithm, chosen once per trainer.

    Each iteration of ``Trainer._run`` first evaluates the current weights (the test
    metrics of the epoch that made them), then takes the next step: ``evaluate`` then
    ``gradient``. A metric is whatever ``nan`` is (a float, or a 0-d tensor on the device);
    ``row`` makes an epoch's row of them and ``stack`` brings rows to the host as [n, 4]."""

    nan: Any

    def loop_context(self) -> ContextManager:
        """Held around the whole loop."""

    def evaluate(self, need_test: bool) -> tuple[Any, Any] | None:
        """Test (loss, accuracy) of the current weights when ``need_test``."""

    def gradient(self) -> tuple[Any, Any]:
        """Fill ``trainer.flat.grad`` for the train split; (train loss, train accuracy)."""

    def row(self, train_loss: Any, test_loss: Any, train_acc: Any, test_acc: Any) -> Any:
        """One epoch's row, kept until the next flush."""

    def stack(self, rows: list) -> np.ndarray:
        """Rows -> [n, 4] float64 on the host."""

    def nonfinite(self, train_loss: Any, test: tuple[Any, Any] | None) -> bool:
        """Whether this epoch's losses are known, already, not to be finite (forcing a flush)."""

    def after_step(self) -> None:
        """After AdamW stepped."""


class AutogradStepper:
    """The fast forward (``grok_engine.fast``) with autograd: any model, any device. The
    metrics stay 0-d tensors on the device (no host sync per epoch); a non-finite loss is
    found when the rows reach the host at a flush."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.nan = torch.tensor(math.nan, dtype=torch.float64, device=trainer.device)

    def loop_context(self) -> ContextManager:
        return contextlib.nullcontext()

    def evaluate(self, need_test: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not need_test:
            return None
        t = self.trainer
        with torch.inference_mode():
            logits = eval_logits(t.views(detach=True), t.test_a, t.test_b, t.config.model)
            return loss_fn(logits, t.test_labels), accuracy(logits, t.test_labels)

    def gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.trainer
        logits = last_logits(t.views(), t.train_a, t.train_b, t.config.model)
        logits.register_hook(flush_subnormals)
        loss = loss_fn(logits, t.train_labels)
        loss.backward()
        return loss.detach(), accuracy(logits.detach(), t.train_labels)

    def row(self, train_loss, test_loss, train_acc, test_acc) -> torch.Tensor:
        return torch.stack((train_loss, test_loss, train_acc, test_acc))

    def stack(self, rows: list) -> np.ndarray:
        return torch.stack(rows).cpu().numpy()

    def nonfinite(self, train_loss, test) -> bool:
        return False  # on the device: found at the flush, without a sync here

    def after_step(self) -> None:
        self.trainer.flat.grad.zero_()


class NumpyStepper:
    """The hand-written path for the notebook's 1-layer model at small p on the CPU:
    :class:`grok_engine.numpy_pass.NumpyPass` with one member (a sweep pack runs the same
    code with many, which is why a member's numbers are its solo run's), metrics as floats.

    ``evaluate`` runs the forward of the current weights over every pair (the train and
    test rows are a split of the grid): the test metrics and the first part of the
    backward; ``gradient`` ends it. The forward runs on the whole grid every epoch,
    evaluated or not, so a run's numbers depend only on its config."""

    nan = math.nan

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        cfg = trainer.config
        # numpy views of the flat weights and gradient, as a stack of one member: the
        # hand-written backward writes into the same memory the torch AdamW steps.
        self._w = one_layer.one_member({n: v.numpy() for n, v in trainer.views(detach=True).items()})
        self._grads = one_layer.one_member({n: v.numpy() for n, v in trainer._per_name(trainer.flat.grad).items()})
        rows = MemberRows.of(trainer, cfg.task.p, cfg.task.d_vocab_out)
        self._pass = NumpyPass([rows], cfg.task.p, cfg.model, cfg.task.d_vocab_out)

    def loop_context(self) -> ContextManager:
        # numpy's BLAS on one thread (runtime.single_blas_thread says why); no overflow
        # warnings: a diverging run is stopped and reported by Trainer._run.
        stack = contextlib.ExitStack()
        stack.enter_context(runtime.single_blas_thread())
        stack.enter_context(np.errstate(over="ignore", invalid="ignore"))
        return stack

    def evaluate(self, need_test: bool) -> tuple[float, float] | None:
        loss, acc = self._pass.evaluate(self._w, self._grads, need_test)
        return (float(loss[0]), float(acc[0])) if need_test else None

    def gradient(self) -> tuple[float, float]:
        loss, acc = self._pass.gradient(self._w, self._grads)
        return float(loss[0]), float(acc[0])

    def row(self, train_loss, test_loss, train_acc, test_acc) -> tuple[float, float, float, float]:
        return (train_loss, test_loss, train_acc, test_acc)

    def stack(self, rows: list) -> np.ndarray:
        return np.array(rows)

    def nonfinite(self, train_loss, test) -> bool:
        return not (math.isfinite(train_loss) and (test is None or math.isfinite(test[0])))

    def after_step(self) -> None:
        pass  # the hand-written backward overwrites every gradient


class Trainer:
    """One run's training state; ``run()`` advances it.

    >>> trainer = Trainer(RunConfig())            # the notebook's experiment
    >>> trainer.run(callback=print_event)          # doctest: +SKIP
    """

    def __init__(self, config: RunConfig, weights: dict[str, torch.Tensor] | None = None,
                 resume: dict[str, torch.Tensor] | None = None, metrics: Metrics | None = None,
                 epoch: int = 0, dataset: Dataset | None = None):
        self.config = config
        self.device = pick_device(config.train.device)
        self.dataset = dataset if dataset is not None else make_dataset(config.task)
        self.epoch = epoch
        self.metrics = metrics if metrics is not None else Metrics()
        self.diverged: Diverged | None = None  # set when training stopped on a non-finite value
        weights = weights if weights is not None else init_weights(config.task, config.model)
        self._build_params(weights)
        self._build_optimizer(resume)
        ds, dev = self.dataset, self.device
        self.train_a = ds.tokens[ds.train_indices, 0].to(dev)
        self.train_b = ds.tokens[ds.train_indices, 1].to(dev)
        self.train_labels = ds.labels[ds.train_indices].to(dev)
        self.test_a = ds.tokens[ds.test_indices, 0].to(dev)
        self.test_b = ds.tokens[ds.test_indices, 1].to(dev)
        self.test_labels = ds.labels[ds.test_indices].to(dev)
        use_numpy = (self.device.type == "cpu" and config.task.p <= MANUAL_MAX_P
                     and one_layer.supported(config.model, frozenset(self.params) | set(self.frozen)))
        self.stepper: Stepper = NumpyStepper(self) if use_numpy else AutogradStepper(self)

    @property
    def manual(self) -> bool:
        """Whether the hand-written numpy path trains this run (NumpyStepper)."""
        return isinstance(self.stepper, NumpyStepper)

    # -- parameters: one flat vector, leaf views per name ------------------------------
    def _build_params(self, weights: dict[str, torch.Tensor]) -> None:
        """Trainable weights live in one flat vector ``self.flat`` (what AdamW steps: one
        fused kernel per epoch) with one flat gradient. Each parameter is a leaf *view* of
        that vector whose ``.grad`` is a view of the flat gradient, so backward accumulates
        straight into it (no per-parameter gradient tensors, no concatenation)."""
        freeze = self.config.train.freeze_biases
        self.frozen: dict[str, torch.Tensor] = {}
        self.layout: list[tuple[str, tuple[int, ...], int, int]] = []
        chunks, offset = [], 0
        for name, shape in param_shapes(self.config.task, self.config.model):
            value = weights[name].detach().to(torch.float32)
            if freeze and is_bias(name):
                if value.any():  # an all-zero frozen bias is left out: fast.py reads it as 0
                    self.frozen[name] = value.to(self.device).clone()
                continue
            self.layout.append((name, shape, offset, offset + value.numel()))
            chunks.append(value.reshape(-1))
            offset += value.numel()
        self.flat = torch.cat(chunks).to(self.device).requires_grad_(True)
        self.flat.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for name, shape, start, end in self.layout:
            leaf = self.flat.detach()[start:end].view(shape).requires_grad_(True)
            leaf.grad = self.flat.grad[start:end].view(shape)
            self.params[name] = leaf

    def views(self, detach: bool = False) -> dict[str, torch.Tensor]:
        """name -> weight tensor (trainable leaves and frozen biases)."""
        w = dict(self.frozen)
        for name, value in self.params.items():
            w[name] = value.detach() if detach else value
        return w

    def weights(self) -> dict[str, torch.Tensor]:
        """Current weights, detached copies on the CPU, HookedTransformer key order."""
        w = self.views(detach=True)
        order = param_shapes(self.config.task, self.config.model)
        return {name: w[name].to("cpu", copy=True).contiguous() if name in w else torch.zeros(shape)
                for name, shape in order}

    def _per_name(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: flat[start:end].view(shape) for name, shape, start, end in self.layout}

    def _build_optimizer(self, resume: dict[str, torch.Tensor] | None) -> None:
        t = self.config.train
        self.optimizer = FlatAdamW(self.flat, lr=t.lr, betas=(t.beta1, t.beta2),
                                   weight_decay=t.weight_decay)
        self.grokfast_ema = torch.zeros_like(self.flat) if t.grokfast else None
        if resume and "step" in resume:
            opt = self.optimizer
            for name, view in self._per_name(opt.exp_avg).items():
                view.copy_(resume[f"exp_avg/{name}"])
            for name, view in self._per_name(opt.exp_avg_sq).items():
                view.copy_(resume[f"exp_avg_sq/{name}"])
            opt.step_t.copy_(resume["step"].reshape(()))
            if self.grokfast_ema is not None:
                for name, view in self._per_name(self.grokfast_ema).items():
                    if f"grokfast_ema/{name}" in resume:
                        view.copy_(resume[f"grokfast_ema/{name}"])

    def resume_state(self) -> dict[str, torch.Tensor]:
        """Optimizer step, moments (and Grokfast EMA) per parameter name, for safetensors.

        A snapshot: every tensor is a copy on the CPU, never a view of the trainer's state.
        The background writer saves it while the loop goes on stepping (``.to("cpu")`` of a
        CPU tensor is the tensor itself: a saved ``step`` of 92 at epoch 90)."""
        opt = self.optimizer
        out: dict[str, torch.Tensor] = {"epoch": torch.tensor(self.epoch),
                                        "step": opt.step_t.detach().to("cpu", copy=True).reshape(())}
        for key, flat in (("exp_avg", opt.exp_avg), ("exp_avg_sq", opt.exp_avg_sq),
                          ("grokfast_ema", self.grokfast_ema)):
            if flat is not None:
                for name, view in self._per_name(flat.detach().cpu()).items():
                    out[f"{key}/{name}"] = view.clone()
        return out

    def _metrics_copy(self) -> Metrics:
        return Metrics(**{k: v.copy() for k, v in self.metrics.as_dict().items()})

    # (epoch, test loss, test accuracy) of the last grid epoch seen by _dense_checkpoint_due
    _dense_ref: tuple[int, float, float] | None = None

    def _dense_checkpoint_due(self, test: tuple | None) -> bool:
        """Whether this epoch gets a dense checkpoint (see DENSE_DIVISOR): a grid epoch whose
        test metrics ``test`` moved quickly since the previous grid epoch's. Those come from
        the previous call, or from the metrics (a resumed run), so the checkpoints depend on
        the run's metrics alone. On a GPU this reads two numbers to the host once per grid
        step."""
        t = self.config.train
        step = dense_checkpoint_step(t.checkpoint_every, t.eval_every)
        if not step or test is None or self.epoch % step or self.epoch % t.checkpoint_every == 0:
            return False
        now = (self.epoch, float(test[0]), float(test[1]))
        before, self._dense_ref = self._dense_ref, now
        prev = self.epoch - step
        if before is None or before[0] != prev:
            i = np.searchsorted(self.metrics.epoch, prev)
            if i >= len(self.metrics) or self.metrics.epoch[i] != prev:
                return False
            before = (prev, float(self.metrics.test_loss[i]), float(self.metrics.test_acc[i]))
        return moved_quickly(before[1:], now[1:], len(self.test_labels))

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(self.epoch, self.weights(), self.resume_state(), self._metrics_copy())

    def _emit_checkpoint(self, emit: Callback) -> None:
        """Emit a checkpoint of the current weights or, if one of them is not finite,
        record the divergence instead: blown-up weights are never checkpointed."""
        checkpoint = self._checkpoint()
        bad = first_nonfinite(checkpoint.weights)
        if bad is None:
            emit(checkpoint)
        else:
            self.diverged = Diverged(self.epoch, f"{bad} is not finite", checkpoint.metrics)

    def run(self, callback: Callback | None = None, stop: Callable[[], bool] | None = None,
            until_epoch: int | None = None, report_interval_s: float = 0.25) -> Metrics:
        """Train up to ``until_epoch`` (default: the config's epochs).

        Emits a Checkpoint at epoch 0 (the initial weights) when starting fresh, every
        ``checkpoint_every`` epochs, between those where the test metrics move quickly
        (:func:`dense_checkpoint_step`, :func:`moved_quickly`), and where it stops (the end
        or ``stop()``); Progress events at most every ``report_interval_s`` seconds; a
        Diverged event, last, instead of any further checkpoint once a loss or weight is not
        finite (``self.diverged``).
        Returns all metrics.
        """
        with self.stepper.loop_context():
            return self._run(callback, stop, until_epoch, report_interval_s)

    def _run(self, callback: Callback | None, stop: Callable[[], bool] | None,
             until_epoch: int | None, report_interval_s: float) -> Metrics:
        """The loop. Divergence costs no host sync: the metrics reach the host at each
        flush, where any non-finite loss is found (on the numpy path the loss is a float
        already, so a bad epoch forces the flush at once), and each checkpoint's weights,
        copied to the CPU anyway, are checked before they are emitted."""
        cfg, t = self.config, self.config.train
        target = until_epoch if until_epoch is not None else t.epochs
        emit = callback or (lambda event: None)
        should_stop = stop or (lambda: False)
        dev = self.device
        on_gpu = dev.type != "cpu"
        stepper = self.stepper
        nan = stepper.nan
        rows: list = []
        buf_epochs: list[int] = []
        self.diverged = None
        if self.epoch == 0 and len(self.metrics) == 0:
            emit(self._checkpoint())
        start_epoch = self.epoch
        start_time = last_report = time.perf_counter()

        def flush() -> None:
            nonlocal last_report
            if not buf_epochs:
                return
            values = stepper.stack(rows)  # the only host sync
            epochs = np.array(buf_epochs, np.int64)
            chunk = Metrics(epochs, values[:, 0], values[:, 1], values[:, 2], values[:, 3])
            bad = first_nonfinite_row(chunk, (epochs % t.eval_every == 0) | (epochs == target))
            if bad is not None:
                chunk = chunk.truncate(bad[0])
            self.metrics.extend(chunk)
            buf_epochs.clear()
            rows.clear()
            last_report = time.perf_counter()
            emit(Progress(chunk, bad[0] if bad else self.epoch, target, last_report - start_time))
            if bad is not None:
                self.diverged = Diverged(bad[0], bad[1], self._metrics_copy())

        train_loss = train_acc = nan  # of the step that made the current weights
        while start_epoch < target:  # leaves through a break once the last row is done
            stepped = self.epoch > start_epoch
            test = stepper.evaluate(stepped and (self.epoch % t.eval_every == 0 or self.epoch == target))
            if stepped:  # finish the row of the epoch that made these weights
                test_loss, test_acc = test if test is not None else (nan, nan)
                rows.append(stepper.row(train_loss, test_loss, train_acc, test_acc))
                buf_epochs.append(self.epoch)
                at_checkpoint = self.epoch % t.checkpoint_every == 0 or self._dense_checkpoint_due(test)
                stopping = should_stop()
                nonfinite = stepper.nonfinite(train_loss, test)
                if (at_checkpoint or stopping or self.epoch == target or nonfinite
                        or (not on_gpu and time.perf_counter() - last_report >= report_interval_s)
                        or (on_gpu and len(buf_epochs) >= 256
                            and time.perf_counter() - last_report >= report_interval_s)):
                    flush()
                if self.diverged is None and (at_checkpoint or stopping or self.epoch == target):
                    self._emit_checkpoint(emit)
                if self.diverged is not None:
                    emit(self.diverged)
                    break
                if stopping or self.epoch == target:
                    break
            train_loss, train_acc = stepper.gradient()
            with torch.no_grad():
                if self.grokfast_ema is not None:
                    # Grokfast-EMA (Lee et al. 2024): amplify the slow gradient component.
                    grad = self.flat.grad
                    self.grokfast_ema.mul_(t.grokfast_alpha).add_(grad, alpha=1 - t.grokfast_alpha)
                    grad.add_(self.grokfast_ema, alpha=t.grokfast_lamb)
            self.optimizer.step()
            stepper.after_step()
            self.epoch += 1
        return self.metrics
