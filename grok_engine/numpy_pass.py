"""One epoch's forward and backward of M models of the notebook's 1-layer shape on the CPU,
in numpy: the solo trainer's (M = 1, ``train.NumpyStepper``) and a sweep pack's
(``sweep.stacked.StackedTrainer``). One code path for both is what makes a member trained
in a pack the same bits as trained alone (:mod:`grok_engine.one_layer_backward` says why
the ops are per member whatever M is).

Per epoch: :meth:`NumpyPass.evaluate` runs :func:`one_layer.grid_forward` of every member
over every pair; as each member's grid rows are made (while in the cache) it takes the
member's test metrics (when asked) and train loss from its logits and runs the MLP part of
its backward. :meth:`NumpyPass.gradient` then runs the attention part stacked over every
member and returns the train metrics. The forward runs on the whole grid every epoch,
evaluated or not, so a run's numbers depend only on its config.

Weights and gradients come as dicts of numpy arrays [M, ...]: views of the trainers' flat
tensors, which torch's AdamW steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from grok_engine import one_layer
from grok_engine.config import ModelConfig
from grok_engine.one_layer_backward import AttentionWork, MlpWork, backward_attention, backward_mlp

Weights = dict[str, np.ndarray]


@dataclass
class MemberRows:
    """One member's split of the grid: places a * p + b, labels, and the train rows'
    one-hots (float64, for dlogits)."""

    train: np.ndarray          # [n] int64
    train_labels: np.ndarray   # [n]
    train_onehot: np.ndarray   # [n, d_vocab_out]
    test: np.ndarray           # [n_test]
    test_labels: np.ndarray

    @classmethod
    def of(cls, trainer, p: int, d_vocab_out: int) -> "MemberRows":
        """A Trainer's split (its train_a, train_b, train_labels, test_* tensors)."""
        def part(name: str) -> np.ndarray:
            return getattr(trainer, name).numpy().astype(np.int64)

        train_labels, test_labels = part("train_labels"), part("test_labels")
        return cls(part("train_a") * p + part("train_b"), train_labels, one_layer.onehot(train_labels, d_vocab_out),
                   part("test_a") * p + part("test_b"), test_labels)

    def grid_labels(self, p: int) -> np.ndarray:
        """[p*p] each pair's label in the grid order (0 for a pair in neither split, if
        any: no metric reads it)."""
        labels = np.zeros(p * p, np.int64)
        labels[self.train], labels[self.test] = self.train_labels, self.test_labels
        return labels


class NumpyPass:
    """The forward and backward of ``members`` (one :class:`MemberRows` each) at modulus or
    size ``p``, with buffers made once (module docstring for the order of the work)."""

    def __init__(self, members: Sequence[MemberRows], p: int, cfg: ModelConfig, d_vocab_out: int):
        self.p, self.cfg, self.d_vocab_out = p, cfg, d_vocab_out
        self._build(list(members))

    def _build(self, members: list[MemberRows]) -> None:
        M, p, cfg = len(members), self.p, self.cfg
        self.members = members
        self.buffers = one_layer.GridBuffers(M, p, cfg, self.d_vocab_out, keep_activations=False)
        self.attention_work = AttentionWork(M, p, cfg)
        self.mlp_work = {n: MlpWork(n, cfg, self.d_vocab_out) for n in {len(r.train) for r in members}}
        self.labels = [r.grid_labels(p) for r in members]
        # where each pair's label is in its member's flattened [p*p, V] log-probabilities
        self.label_places = [np.arange(p * p) * self.d_vocab_out + labels for labels in self.labels]
        self.logp = np.empty((p * p, self.d_vocab_out))  # one member's log-probabilities, float64
        self.train_loss, self.train_acc = np.full(M, math.nan), np.full(M, math.nan)
        self._forward: one_layer.Grid | None = None

    def shrink(self, keep: list[int]) -> None:
        """Keep only the members ``keep`` (indices, in the new order)."""
        self._build([self.members[i] for i in keep])

    def evaluate(self, w: Weights, grads: Weights, need_test: bool) -> tuple[np.ndarray, np.ndarray]:
        """Test (loss, accuracy) [M] of the weights ``w`` (NaN unless ``need_test``); the
        MLP part of the train rows' gradient into ``grads``, which :meth:`gradient` ends."""
        M = len(self.members)
        test_loss, test_acc = np.full(M, math.nan), np.full(M, math.nan)

        def after(m: int, t: one_layer.Tables, resid_mid: np.ndarray, post: np.ndarray,
                  logits: np.ndarray) -> None:
            # log_softmax once over the member's grid (a row's bits are those it gets alone),
            # then each split's mean of its rows' -log p(label) and argmax hits
            rows = self.members[m]
            logp = one_layer.log_probs(logits, self.logp)
            logp_label = np.take(logp, self.label_places[m])          # [p*p] log p(label)
            hit = logits.argmax(1) == self.labels[m]
            if need_test:
                test_loss[m] = -float(np.take(logp_label, rows.test).mean())
                test_acc[m] = float(np.take(hit, rows.test).mean())
            self.train_loss[m] = -float(np.take(logp_label, rows.train).mean())
            self.train_acc[m] = float(np.take(hit, rows.train).mean())
            dlogits = one_layer.dlogits_of(one_layer.take_rows(logp, rows.train), rows.train_onehot)
            dresid = backward_mlp(w, t, m, rows.train, resid_mid, post, dlogits, grads,
                                  self.mlp_work[len(rows.train)])
            self.attention_work.rows(t, m, rows.train, dresid, self.buffers.P[m])

        self._forward = one_layer.grid_forward(w, self.p, self.cfg, self.buffers, after)
        return test_loss, test_acc

    def gradient(self, w: Weights, grads: Weights) -> tuple[np.ndarray, np.ndarray]:
        """End the train rows' gradient of the weights :meth:`evaluate` ran (every entry of
        ``grads`` written); train (loss, accuracy) [M]."""
        assert self._forward is not None, "evaluate makes the forward first"
        grid, self._forward = self._forward, None  # its weights are about to change
        backward_attention(w, grid.t, grads, self.cfg, self.attention_work)
        return self.train_loss.copy(), self.train_acc.copy()
