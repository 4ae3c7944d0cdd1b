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

Which stacked forward. On the CPU, for the notebook's 1-layer model at p <= MANUAL_MAX_P
(where the solo trainer runs ``one_layer``'s numpy forward and hand-written backward),
the pack runs :mod:`grok_engine.sweep.stacked_one_layer`, the same ops with a member axis:
numpy's stacked matmul is one BLAS call per member on the solo call's shapes, so a member
gets the solo trainer's numbers bit for bit. Batched torch (``bmm``/``einsum``, or
``torch.func.stack_module_state`` + ``vmap``) would round differently from the solo numpy
path (the solo autograd and numpy paths already differ by ~1e-6 after 60 epochs, see
``test_hand_written_backward_trains_like_autograd``), and float32 training amplifies such
a difference past the promised 1e-5. Measured at p=23, d_model 32, 8 members on this CPU:
see ``bench/pack_size.py``. Other models (p > 32, LayerNorm, GELU, deeper, a GPU) are not
stacked yet: :func:`stackable` says so and ``train_pack`` trains those members one after
another with the solo trainer.

Train splits of different sizes (members with different ``frac_train``): every member's
forward runs all p*p rows (its train rows first, as the solo trainer's does), so the
forward is one stack; the backward runs once per group of members with the same train row
count (a sweep over frac_train has a few groups), because padding the shorter splits with
zero rows would change BLAS's blocking of the sums and with it the rounding.

A member leaves the pack when it stops (its epochs, its stop-at-test-acc, divergence, or
``stop()``): the stack shrinks (one copy of the remaining rows) rather than masking, since
a masked member would still cost its full share of every epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from grok_engine import one_layer
from grok_engine.config import RunConfig
from grok_engine.errors import GrokError
from grok_engine.sweep import stacked_one_layer as so
from grok_engine.train import (Callback, Diverged, Metrics, Progress, Trainer,
                               first_nonfinite_row)

DONE, STOPPED, DIVERGED = "done", "stopped", "diverged"


def shape_key(config: RunConfig) -> tuple:
    """What members of one pack must share: the task, p and every model dimension (and
    which biases train), i.e. the parameter layout and the rows."""
    t, m = config.task, config.model
    return (t.task, t.p, m.n_layers, m.n_heads, m.d_model, m.d_head, m.d_mlp, m.act_fn,
            m.normalization, config.train.freeze_biases)


def stackable(trainers: Sequence[Trainer]) -> bool:
    """Whether these trainers can train as one stack: same shapes, and each on the solo
    numpy path (see the module docstring)."""
    return (len(trainers) > 0 and len({shape_key(t.config) for t in trainers}) == 1
            and all(t.manual for t in trainers))


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
        if not stackable(trainers):
            raise GrokError("these runs cannot train as one stack: they need one shape (task, p, "
                            "model dims) and the CPU numpy path (1 layer, no LayerNorm, ReLU, "
                            "frozen zero biases, p <= 32)")
        n = len(trainers)
        callbacks = callbacks or [None] * n
        targets = targets or [None] * n
        stop_at_test_acc = stop_at_test_acc or [None] * n
        self.members = [_Member(t, cb or (lambda event: None),
                                target if target is not None else t.config.train.epochs, acc)
                        for t, cb, target, acc in zip(trainers, callbacks, targets, stop_at_test_acc)]
        first = trainers[0]
        self.model, self.p = first.config.model, first.config.task.p
        self.layout = first.layout

    @property
    def states(self) -> list[str | None]:
        return [m.state for m in self.members]

    # -- the stack -----------------------------------------------------------------------
    def _stack(self, active: list[_Member]) -> None:
        """The live state of ``active``'s members as rows of stacked tensors (copies of
        each Trainer's), with numpy views per weight name and the per-member rows."""
        ts = [m.trainer for m in active]
        self.flat = torch.stack([t.flat.detach() for t in ts])
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.stack([t.optimizer.exp_avg for t in ts])
        self.exp_avg_sq = torch.stack([t.optimizer.exp_avg_sq for t in ts])
        self.step = torch.stack([t.optimizer.step_t.reshape(()) for t in ts])
        self.ema = torch.stack([t.grokfast_ema if t.grokfast_ema is not None else torch.zeros_like(t.flat)
                                for t in ts])
        self._views()
        M, H = len(ts), self.model.n_heads
        a = np.stack([torch.cat([t.train_a, t.test_a]).numpy() for t in ts])
        b = np.stack([torch.cat([t.train_b, t.test_b]).numpy() for t in ts])
        self.rows = so.StackedRows.of(a, b, self.p, H)
        self._groups(active)

    def _shrink(self, active: list[_Member], keep: list[int]) -> None:
        """Keep only the rows ``keep`` (indices into the current stack) of every tensor."""
        idx = torch.tensor(keep)
        for name in ("flat", "grad", "exp_avg", "exp_avg_sq", "step", "ema"):
            setattr(self, name, getattr(self, name).index_select(0, idx).contiguous())
        self._views()
        k = np.array(keep)
        self.rows = so.StackedRows(self.rows.idx3[k], self.p, self.model.n_heads,
                                   np.ascontiguousarray(self.rows.gather3[k]))
        self._groups(active)

    def _views(self) -> None:
        M = self.flat.shape[0]
        flat_np, grad_np = self.flat.numpy(), self.grad.numpy()
        self.w = {name: flat_np[:, s:e].reshape(M, *shape) for name, shape, s, e in self.layout}
        self.g = {name: grad_np[:, s:e].reshape(M, *shape) for name, shape, s, e in self.layout}

    def _groups(self, active: list[_Member]) -> None:
        """Members by train row count: (members, n_train, rows of the backward, labels and
        one-hots of the train and test rows)."""
        by_n: dict[int, list[int]] = {}
        for i, m in enumerate(active):
            by_n.setdefault(len(m.trainer.train_labels), []).append(i)
        d_out = active[0].trainer.config.task.d_vocab_out
        self.groups = []
        for n, idx in by_n.items():
            members = np.array(idx)
            ts = [active[i].trainer for i in idx]
            train = np.stack([t.train_labels.numpy() for t in ts])
            test = np.stack([t.test_labels.numpy() for t in ts])
            self.groups.append(_Group(members, n, len(idx) == len(active), self.rows.head(members, n),
                                      train, onehot(train, d_out), test, onehot(test, d_out)))

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

    # -- one epoch -----------------------------------------------------------------------
    def _evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, so.Saved]:
        """Forward of every member's rows: (test loss [M], test acc [M], logits, saved)."""
        logits, saved = so.forward(self.w, self.rows, self.model)
        M = logits.shape[0]
        test_loss, test_acc = np.empty(M), np.empty(M)
        for g in self.groups:
            part = logits[:, g.n:] if g.everyone else logits[g.members, g.n:]
            test_loss[g.members], test_acc[g.members] = so.loss_and_accuracy(part, g.test, g.test_onehot)
        return test_loss, test_acc, logits, saved

    def _gradient(self, logits: np.ndarray, saved: so.Saved) -> tuple[np.ndarray, np.ndarray]:
        """Fill the stacked gradient from the train rows; (train loss [M], train acc [M])."""
        M = logits.shape[0]
        loss, acc = np.empty(M), np.empty(M)
        for g in self.groups:
            part = logits[:, :g.n] if g.everyone else logits[g.members, :g.n]
            loss[g.members], dlogits = so.loss_and_dlogits(part, g.train_onehot)
            acc[g.members] = (part.argmax(-1) == g.train).mean(1)
            s = saved.head(g.members, g.n, g.everyone)
            if g.everyone:
                so.backward(self.w, g.rows, s, dlogits, self.g, self.model)
            else:
                w = {k: v[g.members] for k, v in self.w.items()}
                grads = {k: np.empty_like(v) for k, v in w.items()}
                so.backward(w, g.rows, s, dlogits, grads, self.model)
                for k, v in grads.items():
                    self.g[k][g.members] = v
        return loss, acc

    @torch.no_grad()
    def _step(self, active: list[_Member]) -> None:
        """Grokfast-EMA and AdamW on each member's row with its own settings: the solo
        trainer's ops on a tensor of the solo shape (so the same kernels, the same
        rounding); AdamW in one fused call per group of members sharing lr, betas, decay."""
        groups: dict[tuple, list[int]] = {}
        for i, m in enumerate(active):
            t = m.trainer.config.train
            if t.grokfast:
                grad, ema = self.grad[i], self.ema[i]
                ema.mul_(t.grokfast_alpha).add_(grad, alpha=1 - t.grokfast_alpha)
                grad.add_(ema, alpha=t.grokfast_lamb)
            opt = m.trainer.optimizer
            groups.setdefault((opt.lr, opt.beta1, opt.beta2, opt.weight_decay, opt.eps, opt.fused),
                              []).append(i)
        self.step += 1
        for (lr, beta1, beta2, wd, eps, fused), idx in groups.items():
            rows = [self.flat[i] for i in idx]
            grads = [self.grad[i] for i in idx]
            if fused:
                torch._fused_adamw_(rows, grads, [self.exp_avg[i] for i in idx],
                                    [self.exp_avg_sq[i] for i in idx], [], [self.step[i] for i in idx],
                                    amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd,
                                    eps=eps, maximize=False, grad_scale=None, found_inf=None)
                continue
            for i, p, g in zip(idx, rows, grads):  # torch's single-tensor math, as FlatAdamW's
                step = float(self.step[i])
                p.mul_(1 - lr * wd)
                self.exp_avg[i].lerp_(g, 1 - beta1)
                self.exp_avg_sq[i].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (self.exp_avg_sq[i].sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
                p.addcdiv_(self.exp_avg[i], denom, value=-lr / (1 - beta1 ** step))

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
        start_time = self._last_report = time.perf_counter()
        self._start_time = start_time
        while True:
            test_loss, test_acc, logits, saved = self._evaluate()
            stopping_all = should_stop()
            keep = []
            for i, m in enumerate(active):
                if not self._finish_row(i, m, test_loss[i], test_acc[i], stopping_all, report_interval_s):
                    keep.append(i)
            if len(keep) < len(active):
                active = [active[i] for i in keep]
                if not active:
                    break
                self._shrink(active, keep)
                test_loss, test_acc, logits, saved = self._evaluate()  # the forward of those left
            if time.perf_counter() - self._last_report >= report_interval_s:
                for m in active:
                    self._flush(m)
            train_loss, train_acc = self._gradient(logits, saved)
            self._step(active)
            for i, m in enumerate(active):
                m.train_loss, m.train_acc = float(train_loss[i]), float(train_acc[i])
                m.trainer.epoch += 1
            if on_epoch is not None:
                on_epoch()
        return self.states

    def _finish_row(self, i: int, m: _Member, test_loss: float, test_acc: float,
                    stopping_all: bool, report_interval_s: float) -> bool:
        """The solo loop's step for member ``m`` (row ``i``): finish the row of the epoch
        that made its weights, flush, checkpoint, diverge or stop. True when it leaves."""
        t, cfg = m.trainer, m.trainer.config.train
        if t.epoch == m.start_epoch:
            return False  # nothing stepped yet: the loop's first pass
        test = (test_loss, test_acc) if (t.epoch % cfg.eval_every == 0 or t.epoch == m.target) else None
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


@dataclass
class _Group:
    """Members of the stack that share their train row count ``n``."""

    members: np.ndarray
    n: int
    everyone: bool          # the group is the whole stack (views instead of copies)
    rows: so.StackedRows    # their first n rows
    train: np.ndarray       # [Mg, n] labels
    train_onehot: np.ndarray
    test: np.ndarray        # [Mg, n_test] labels
    test_onehot: np.ndarray


def onehot(labels: np.ndarray, d_vocab_out: int) -> np.ndarray:
    """[M, n, d_vocab_out] float64 one-hots of labels [M, n] (one_layer.onehot per member)."""
    return np.stack([one_layer.onehot(row, d_vocab_out) for row in labels])
