"""Stacked training: M same-shape runs trained as one model with a leading member axis.

Each member is a solo :class:`~grok_engine.train.Trainer` (built by ``Run.trainer()`` or
``Trainer(config)``, so a member starts, or resumes, exactly where the solo path would)
that keeps the member's bookkeeping: config, split, epoch, metrics, dense-checkpoint
reference, and the weights and optimizer state of its checkpoints. The pack holds the
live state: every member's flat parameter vector as one row of ``flat`` [M, P] (the solo
layout, so a row *is* the solo trainer's ``flat``), its gradient, AdamW moments, step and
Grokfast EMA. Each epoch is one stacked forward and backward for all members; the
optimizer then steps each row with its member's own lr, betas and weight decay, and the
Grokfast filter with its own alpha and lamb. At a checkpoint the member's row is copied
into its Trainer, which makes the Checkpoint event, so events, checkpoint epochs (dense
ones included), metrics rows and divergence are the solo trainer's, decided by the same
code on the same numbers.

Which stacked forward, chosen by measuring (on the AMD EPYC, 2 cores, of this project's CI):

* On the CPU, for the notebook's 1-layer model at p <= MANUAL_MAX_P, the pack runs
  :class:`grok_engine.numpy_pass.NumpyPass` with every member, the code the solo trainer
  runs with one. numpy's stacked matmul is one BLAS call per member on the solo call's
  shapes, so a member gets the solo trainer's numbers bit for bit (weights, moments,
  metrics). It saves numpy's per-op overhead: 1.4x to 2.4x the solo trainer's
  model-epochs per CPU-second at p=11-17 with 16 members, about 1x at p=23 where the
  matmuls dominate (the table in ``grok_engine.sweep.pack``, from ``bench/pack_size.py``).
* Every other model (p > 32, LayerNorm, GELU, deeper; any model on a GPU) stacks through
  autograd on ``torch.func.vmap`` of :mod:`grok_engine.fast`'s general forward
  (:class:`_TorchForward`; vmap rather than hand-written bmm/einsum: it batches fast.py's
  own ops, so every model the solo path trains stacks). On a GPU that is one kernel per op
  for the whole pack instead of one per member. But it rounds differently from the solo
  path: measured against solo autograd on 4 GELU members (p=17, lr 1e-2, 120 epochs),
  1e-5 to 1e-2 relative on the losses at the end, the float32 rounding of each epoch grown
  by the training. So on the CPU, where the pack promises the solo numbers to 1e-5,
  ``train_pack`` trains such members one after another with the solo trainer
  (:func:`stackable`).

Train splits of different sizes (members with different ``frac_train``) share the pass:
the forward runs every member's whole grid (as the solo trainer's does), the MLP's
backward runs member by member on its own train rows, and the attention's backward runs
on the grid, where the rows a member does not train on carry a zero gradient
(:mod:`grok_engine.one_layer_backward`). Padding the shorter splits with zero rows instead
would change BLAS's blocking of the sums and with it the rounding.

A member leaves the pack when it stops (its epochs, its stop-at-test-acc, divergence, or
``stop()``): the stack shrinks (one copy of the remaining rows) rather than masking it,
since a masked member still costs its share of every epoch: measured (d_model 32, p=23),
an epoch of 8 members takes 12.9 ms, of 4 members 10.3 ms, so 4 masked members would cost
25% per epoch for the rest of the pack, and the copy costs less than one epoch once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from grok_engine.numpy_pass import MemberRows, NumpyPass
from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.fast import _deep_resid_mid, _mlp_and_unembed, flush_subnormals
from grok_engine.train import (Callback, Diverged, Metrics, Progress, Trainer,
                               first_nonfinite_row)
from grok_engine.weights import param_shapes

DONE, STOPPED, DIVERGED = "done", "stopped", "diverged"


def shape_key(config: RunConfig) -> tuple:
    """What members of one pack must share: the task, p and every model dimension (and
    which biases train), i.e. the parameter layout and the rows."""
    t, m = config.task, config.model
    return (t.task, t.p, m.n_layers, m.n_heads, m.d_model, m.d_head, m.d_mlp, m.act_fn,
            m.normalization, config.train.freeze_biases)


def one_stack(trainers: Sequence[Trainer]) -> bool:
    """Whether these trainers can train as one stack: one shape, one device, and all on the
    solo numpy path or none."""
    return (len(trainers) > 0 and len({shape_key(t.config) for t in trainers}) == 1
            and len({(t.device, t.manual) for t in trainers}) == 1)


def stackable(trainers: Sequence[Trainer]) -> bool:
    """Whether a pack should stack these trainers: :func:`one_stack`, on the numpy path or
    an accelerator. On the CPU the torch stack is not used: the solo trainer's numbers are
    promised there to 1e-5 and the torch stack only reaches float32 rounding per epoch
    (module docstring); a GPU's own solo run is not bit-stable either, and there the stack
    is what makes a sweep fast."""
    return one_stack(trainers) and (trainers[0].manual or trainers[0].device.type != "cpu")


@dataclass
class _Member:
    """One member's place in the loop; its Trainer holds everything a checkpoint needs."""

    trainer: Trainer
    emit: Callback
    target: int
    stop_acc: float | None
    start_epoch: int = 0
    rows: list = field(default_factory=list)       # (train loss, test loss, train acc, test acc)
    epochs: list = field(default_factory=list)
    train_loss: float = math.nan
    train_acc: float = math.nan
    state: str | None = None                       # DONE / STOPPED / DIVERGED once it left


class StackedTrainer:
    """M solo trainers' runs advanced as one stacked model; ``run()`` trains them.

    ``callbacks[i]`` receives member i's events (the solo trainer's Progress, Checkpoint
    and Diverged, in the same order); ``targets[i]`` is member i's last epoch (default: its
    config's epochs); ``stop_at_test_acc[i]``, when set, stops member i (checkpointed, state
    "done") at the first epoch whose test accuracy reaches it.
    """

    def __init__(self, trainers: Sequence[Trainer], callbacks: Sequence[Callback | None] | None = None,
                 targets: Sequence[int | None] | None = None,
                 stop_at_test_acc: Sequence[float | None] | None = None):
        if not one_stack(trainers):
            raise GrokError("these runs cannot train as one stack: they need one shape (task, p, "
                            "model dims) and one device")
        n = len(trainers)
        callbacks = callbacks or [None] * n
        targets = targets or [None] * n
        stop_at_test_acc = stop_at_test_acc or [None] * n
        self.members = [_Member(t, cb or (lambda event: None),
                                target if target is not None else t.config.train.epochs, acc)
                        for t, cb, target, acc in zip(trainers, callbacks, targets, stop_at_test_acc)]
        self.layout = trainers[0].layout  # one shape: one layout of the flat vector

    @property
    def states(self) -> list[str | None]:
        return [m.state for m in self.members]

    # -- the stack -----------------------------------------------------------------------
    def _stack(self, active: list[_Member]) -> None:
        """The live state of ``active``'s members as rows of stacked tensors (copies of
        each Trainer's) and the stacked forward over their rows."""
        ts = [m.trainer for m in active]
        self.flat = torch.stack([t.flat.detach() for t in ts])
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.stack([t.optimizer.exp_avg for t in ts])
        self.exp_avg_sq = torch.stack([t.optimizer.exp_avg_sq for t in ts])
        self.step = torch.stack([t.optimizer.step_t.reshape(()) for t in ts])
        self.ema = torch.stack([t.grokfast_ema if t.grokfast_ema is not None else torch.zeros_like(t.flat)
                                for t in ts])
        forward = _NumpyForward if ts[0].manual else _TorchForward
        self.forward = forward(ts, self.layout)

    def _shrink(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (indices into the current stack) of every tensor."""
        idx = torch.tensor(keep, device=self.flat.device)
        for name in ("flat", "grad", "exp_avg", "exp_avg_sq", "step", "ema"):
            setattr(self, name, getattr(self, name).index_select(0, idx).contiguous())
        self.forward.shrink(keep)

    def _to_trainer(self, i: int, m: _Member) -> None:
        """Copy row ``i`` of the stack into member ``m``'s Trainer (before a checkpoint)."""
        t = m.trainer
        with torch.no_grad():
            t.flat.copy_(self.flat[i])
            t.optimizer.exp_avg.copy_(self.exp_avg[i])
            t.optimizer.exp_avg_sq.copy_(self.exp_avg_sq[i])
            t.optimizer.step_t.copy_(self.step[i])
            if t.grokfast_ema is not None:
                t.grokfast_ema.copy_(self.ema[i])

    @torch.no_grad()
    def _step(self, active: list[_Member]) -> None:
        """Grokfast-EMA and AdamW on each member's row with its own settings: the solo
        trainer's ops on tensors of the solo shape (so the same kernels and rounding), one
        multi-tensor call per group of members that share the settings."""
        filters: dict[tuple, list[int]] = {}
        adams: dict[tuple, list[int]] = {}
        for i, m in enumerate(active):
            t, opt = m.trainer.config.train, m.trainer.optimizer
            if t.grokfast:
                filters.setdefault((t.grokfast_alpha, t.grokfast_lamb), []).append(i)
            adams.setdefault((opt.lr, opt.beta1, opt.beta2, opt.weight_decay, opt.eps), []).append(i)
        for (alpha, lamb), idx in filters.items():
            grads, emas = [self.grad[i] for i in idx], [self.ema[i] for i in idx]
            torch._foreach_mul_(emas, alpha)
            torch._foreach_add_(emas, grads, alpha=1 - alpha)
            torch._foreach_add_(grads, emas, alpha=lamb)
        self.step += 1
        for (lr, beta1, beta2, wd, eps), idx in adams.items():
            rows, grads = [self.flat[i] for i in idx], [self.grad[i] for i in idx]
            m1, m2 = [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx]
            if self._fused:
                try:
                    torch._fused_adamw_(rows, grads, m1, m2, [], [self.step[i] for i in idx],
                                        amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd,
                                        eps=eps, maximize=False, grad_scale=None, found_inf=None)
                    continue
                except (RuntimeError, NotImplementedError):  # no fused kernel here: as FlatAdamW
                    self._fused = False
            for i, p, g, a, b in zip(idx, rows, grads, m1, m2):  # FlatAdamW's single-tensor math
                step = float(self.step[i])
                p.mul_(1 - lr * wd)
                a.lerp_(g, 1 - beta1)
                b.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (b.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
                p.addcdiv_(a, denom, value=-lr / (1 - beta1 ** step))

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool] | None = None, report_interval_s: float = 0.25,
            on_epoch: Callable[[], None] | None = None) -> list[str | None]:
        """Train every member to its target (or until it stops, diverges or ``stop()``),
        emitting each member's events as its solo trainer would. Returns the end states
        ("done", "stopped", "diverged"), in member order. ``on_epoch()`` is called after
        each stacked epoch (progress reporting)."""
        with threadpool_limits(1), np.errstate(over="ignore", invalid="ignore"):
            # One thread, as the solo numpy path (whose numbers the pack reproduces).
            return self._run(stop or (lambda: False), report_interval_s, on_epoch)

    def _run(self, should_stop: Callable[[], bool], report_interval_s: float,
             on_epoch: Callable[[], None] | None) -> list[str | None]:
        active = []
        for m in self.members:
            t = m.trainer
            t.diverged = None
            if t.epoch == 0 and len(t.metrics) == 0:
                m.emit(t._checkpoint())
            m.start_epoch = t.epoch
            if t.epoch >= m.target:
                m.state = DONE  # the solo loop does nothing either
            else:
                active.append(m)
        if not active:
            return self.states
        self._stack(active)
        self._fused = all(m.trainer.optimizer.fused for m in active)
        self._start_time = self._last_report = time.perf_counter()
        while True:
            need_test = any(self._test_due(m) for m in active)
            test_loss, test_acc = self.forward.evaluate(self.flat, self.grad, need_test)
            stopping_all = should_stop()
            keep = [i for i, m in enumerate(active)
                    if not self._finish_row(i, m, test_loss[i], test_acc[i], stopping_all)]
            if len(keep) < len(active):
                active = [active[i] for i in keep]
                if not active:
                    break
                self._shrink(keep)
                self.forward.evaluate(self.flat, self.grad, False)  # the numpy path's forward of those left
            if time.perf_counter() - self._last_report >= report_interval_s:
                for m in active:
                    self._flush(m)
            train_loss, train_acc = self.forward.gradient(self.flat, self.grad)
            self._step(active)
            for i, m in enumerate(active):
                m.train_loss, m.train_acc = float(train_loss[i]), float(train_acc[i])
                m.trainer.epoch += 1
            if on_epoch is not None:
                on_epoch()
        return self.states

    @staticmethod
    def _test_due(m: _Member) -> bool:
        """Whether the solo loop evaluates member ``m``'s current weights."""
        t = m.trainer
        return t.epoch > m.start_epoch and (t.epoch % t.config.train.eval_every == 0 or t.epoch == m.target)

    def _finish_row(self, i: int, m: _Member, test_loss: float, test_acc: float,
                    stopping_all: bool) -> bool:
        """The solo loop's step for member ``m`` (row ``i``): finish the row of the epoch
        that made its weights, flush, checkpoint, diverge or stop. True when it leaves."""
        t, cfg = m.trainer, m.trainer.config.train
        if t.epoch == m.start_epoch:
            return False  # nothing stepped yet: the loop's first pass
        test = (float(test_loss), float(test_acc)) if self._test_due(m) else None
        tl, ta = test if test is not None else (math.nan, math.nan)
        m.rows.append((m.train_loss, tl, m.train_acc, ta))
        m.epochs.append(t.epoch)
        at_checkpoint = t.epoch % cfg.checkpoint_every == 0 or t._dense_checkpoint_due(test)
        reached = m.stop_acc is not None and test is not None and test_acc >= m.stop_acc
        stopping = stopping_all or reached
        nonfinite = not (math.isfinite(m.train_loss) and (test is None or math.isfinite(tl)))
        end = t.epoch == m.target
        if at_checkpoint or stopping or end or nonfinite:
            self._flush(m)
        if t.diverged is None and (at_checkpoint or stopping or end):
            self._to_trainer(i, m)
            t._emit_checkpoint(m.emit)
        if t.diverged is not None:
            m.emit(t.diverged)
            m.state = DIVERGED
        elif stopping or end:
            m.state = DONE if end or reached else STOPPED
        return m.state is not None

    def _flush(self, m: _Member) -> None:
        """The solo loop's flush for member ``m``: its rows since the last one become
        metrics and a Progress event; a non-finite loss there marks the divergence."""
        if not m.epochs:
            return
        t = m.trainer
        values = np.array(m.rows)
        epochs = np.array(m.epochs, np.int64)
        chunk = Metrics(epochs, values[:, 0], values[:, 1], values[:, 2], values[:, 3])
        bad = first_nonfinite_row(chunk, (epochs % t.config.train.eval_every == 0) | (epochs == m.target))
        if bad is not None:
            chunk = chunk.truncate(bad[0])
        t.metrics.extend(chunk)
        m.rows.clear()
        m.epochs.clear()
        self._last_report = now = time.perf_counter()
        m.emit(Progress(chunk, bad[0] if bad else t.epoch, m.target, now - self._start_time))
        if bad is not None:
            t.diverged = Diverged(bad[0], bad[1], t._metrics_copy())


def _nan(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(m, np.nan), np.full(m, np.nan)


class _NumpyForward:
    """The solo numpy path over the stack: :class:`grok_engine.numpy_pass.NumpyPass` (the
    solo trainer's, with one member) on numpy views of the stacked tensors."""

    def __init__(self, trainers: list[Trainer], layout):
        self.layout = layout
        cfg = trainers[0].config
        rows = [MemberRows.of(t, cfg.task.p, cfg.task.d_vocab_out) for t in trainers]
        self.numpy_pass = NumpyPass(rows, cfg.task.p, cfg.model, cfg.task.d_vocab_out)

    def shrink(self, keep: list[int]) -> None:
        self.numpy_pass.shrink(keep)

    def _views(self, flat: torch.Tensor) -> dict[str, np.ndarray]:
        M, values = flat.shape[0], flat.numpy()
        return {name: values[:, s:e].reshape(M, *shape) for name, shape, s, e in self.layout}

    def evaluate(self, flat: torch.Tensor, grad: torch.Tensor, need_test: bool) -> tuple[np.ndarray, np.ndarray]:
        """Test (loss, accuracy) [M] of the current weights (NaN unless ``need_test``), and
        the first part of the train rows' gradient into ``grad``; :meth:`gradient` ends it."""
        return self.numpy_pass.evaluate(self._views(flat), self._views(grad), need_test)

    def gradient(self, flat: torch.Tensor, grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """End the train rows' gradient in ``grad`` (every entry written); (loss, accuracy) [M]."""
        return self.numpy_pass.gradient(self._views(flat), self._views(grad))


class _TorchForward:
    """Autograd over the stack for every other model, on any device: ``torch.func.vmap``
    of :mod:`grok_engine.fast`'s general last-position forward over the member axis (the
    weights, and each member's own rows). Train and test rows are padded to the longest
    split of the stack and weighted 1/n on a member's real rows, 0 on the padding, so a
    member's loss is its split's mean.

    Not the solo autograd path's op order (that one gathers per-token tables, which cannot
    be batched over members with different rows), so it agrees with the solo trainer to
    float32 rounding per epoch, not to the bit: see ``test_stacked.py``."""

    def __init__(self, trainers: list[Trainer], layout):
        self.layout = layout
        self.model = trainers[0].config.model
        self.trainers = trainers
        dev = trainers[0].device
        names = sorted({n for t in trainers for n in t.frozen})
        shapes = dict(param_shapes(trainers[0].config.task, self.model))
        self.frozen = {n: torch.stack([t.frozen[n] if n in t.frozen else torch.zeros(shapes[n], device=dev)
                                       for t in trainers]) for n in names}
        self.train = _padded([(t.train_a, t.train_b, t.train_labels) for t in trainers])
        self.test = _padded([(t.test_a, t.test_b, t.test_labels) for t in trainers])
        self.logits = torch.func.vmap(self._logits)

    def _logits(self, w: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        resid_mid = _deep_resid_mid(w, a, b, self.model)[0]
        return _mlp_and_unembed(w, self.model.n_layers - 1, resid_mid, self.model)[0]

    def shrink(self, keep: list[int]) -> None:
        idx = torch.tensor(keep, device=self.train[0].device)
        self.trainers = [self.trainers[i] for i in keep]
        self.frozen = {n: v.index_select(0, idx) for n, v in self.frozen.items()}
        self.train = tuple(x.index_select(0, idx) for x in self.train)
        self.test = tuple(x.index_select(0, idx) for x in self.test)

    def _weights(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        M = flat.shape[0]
        w = dict(self.frozen)
        w.update({name: flat[:, s:e].view(M, *shape) for name, shape, s, e in self.layout})
        return w

    def _metrics(self, logits: torch.Tensor, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Per member: mean float64 cross-entropy and accuracy over its real rows."""
        _, _, labels, weight = rows
        logp = logits.to(torch.float64).log_softmax(-1).gather(-1, labels[..., None])[..., 0]
        hit = (logits.argmax(-1) == labels).to(torch.float64)
        return -(logp * weight).sum(1), (hit * weight).sum(1)

    def evaluate(self, flat: torch.Tensor, grad: torch.Tensor, need_test: bool) -> tuple[np.ndarray, np.ndarray]:
        if not need_test:
            return _nan(flat.shape[0])
        with torch.inference_mode():
            a, b = self.test[:2]
            loss, acc = self._metrics(self.logits(self._weights(flat), a, b), self.test)
            both = torch.stack([loss, acc]).cpu().numpy()  # one host sync per evaluated epoch
        return both[0], both[1]

    def gradient(self, flat: torch.Tensor, grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        leaf = flat.detach().requires_grad_(True)
        grad.zero_()
        leaf.grad = grad  # backward accumulates straight into the stack's gradient
        a, b = self.train[:2]
        logits = self.logits(self._weights(leaf), a, b)
        logits.register_hook(flush_subnormals)
        loss, acc = self._metrics(logits, self.train)
        loss.sum().backward()  # members are independent: each row gets its own gradient
        both = torch.stack([loss.detach(), acc]).cpu().numpy()
        return both[0], both[1]


def _padded(rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """(a, b, labels, weight) [M, n_max]: each member's rows, padded with row 0 at weight 0;
    weight 1/n on its n real rows."""
    n_max = max(len(a) for a, _, _ in rows)
    out = []
    for k in range(3):
        out.append(torch.stack([torch.cat([r[k], r[k].new_zeros(n_max - len(r[k]))]) for r in rows]))
    weight = torch.stack([torch.cat([torch.full((len(r[0]),), 1.0 / len(r[0]), dtype=torch.float64),
                                     torch.zeros(n_max - len(r[0]), dtype=torch.float64)]) for r in rows])
    return (*out, weight.to(out[0].device))
