"""How much memory a run will take, told before it starts, and a refusal when it does not fit.

``grok-tui train --p 1000`` (allowed) or ``--d-model 8192 --d-mlp 65536`` used to pass
validation and then grow past 6 GiB within seconds. :func:`check_fits` estimates the peak
of the chosen config on the chosen device and refuses, in one line, one that exceeds the
memory available (``--force`` trains anyway).

The estimate (:func:`estimate`) counts what the trainer really allocates, float32 = 4 bytes,
P = trainable parameters, N = p*p rows, n = train rows, N - n = test rows:

* state, on the device: the flat weights, their gradient, AdamW's two moments and the
  Grokfast EMA: ``4 * P * (4 + grokfast)``;
* activations, on the device: one full-batch forward and backward over the n train rows,
  or the forward of the N - n test rows, whichever is larger (they never overlap). Per
  row, in floats, for the notebook's 1-layer model on the autograd path (``fast.py``):
  ``4 H D`` (the value rows gathered for a and b, kept for the backward, and their
  gradients), ``4 d_mlp`` (the hidden activations kept for the backward, the gradients of
  them and of the pre-activations, and one more: measured, not derived), ``8 V``
  (float32 logits, their float64 copy and log-softmax, the gradients back), ``8 D + 12 H``
  for the residual and attention pattern. A deeper model adds per earlier layer and row
  ``3 (4 d_mlp + 4 H d_head + 6 D + 6 H)`` (all three positions: pre/post activations and
  their gradients, q, k, v, z, residuals) and its last layer reads values per row
  ``6 H d_head`` instead of the token tables. The test forward keeps no graph: ``2 H D +
  2 d_mlp + 5 V + 4 D`` per row. The numpy path (1 layer, p <= 32, CPU) makes one forward
  over all N rows, whose train part its backward reads: per row the dense ``[H, 2p]``
  attention and its gradient, a column of the ``[2p+1, 3n]`` gather matrix and ``4 d_mlp +
  6 V + 6 D``;
* checkpoints, on the host: a checkpoint event (weights, AdamW moments, EMA, about
  ``4 * P * (3 + grokfast)`` bytes) times the events the background writer may hold
  (:meth:`grok_engine.store.AsyncWriter.slots_for`) plus the one being made, and the
  byte copy safetensors makes of the file being written;
* the dataset: tokens, labels and split indices (int64) on the host, their copies on the
  device: ``64 N`` plus ``24 N`` bytes.

Not counted: torch's and the interpreter's own memory (a few hundred MiB, present before
training starts), allocator slack. ``tests/engine/test_memory.py`` holds the estimate to a
measured peak RSS delta on small configs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from grok_engine.config import RunConfig
from grok_engine.errors import GrokError

FLOAT = 4


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a run, by part (see the module docstring)."""

    state: int        # weights, gradient, AdamW moments, Grokfast EMA (device)
    activations: int  # the larger of the train step and the test forward (device)
    checkpoints: int  # checkpoint events in flight to the writer, its byte copy (host)
    data_host: int    # tokens, labels, split indices
    data_device: int  # their copies on the device
    on_gpu: bool

    @property
    def device(self) -> int:
        """Bytes on a GPU (on the CPU everything is host memory: see ``total``)."""
        return self.state + self.activations + self.data_device

    @property
    def host(self) -> int:
        """Bytes in RAM beside a GPU's."""
        return self.checkpoints + self.data_host

    @property
    def total(self) -> int:
        return self.device + self.host

    def parts(self) -> str:
        return (f"weights and AdamW {gib(self.state)}, activations {gib(self.activations)}, "
                f"checkpoints {gib(self.checkpoints)}, data {gib(self.data_host + self.data_device)}")


def gib(n_bytes: float) -> str:
    """Bytes as a short human figure: 512 MiB, 3.2 GiB."""
    if n_bytes < 1 << 30:
        return f"{n_bytes / (1 << 20):.0f} MiB"
    return f"{n_bytes / (1 << 30):.1f} GiB"


def trainable_parameters(config: RunConfig) -> tuple[int, int]:
    """(trainable, all) parameter counts: frozen biases are not trained."""
    from grok_engine.weights import is_bias, param_shapes  # torch, but only for shapes

    total = trainable = 0
    for name, shape in param_shapes(config.task, config.model):
        size = 1
        for dim in shape:
            size *= dim
        total += size
        if not (config.train.freeze_biases and is_bias(name)):
            trainable += size
    return trainable, total


def _floats_per_row_numpy(config: RunConfig) -> int:
    """The numpy path: per row of its forward over all rows (and backward over the train part)."""
    m, p = config.model, config.task.p
    return 2 * m.n_heads * 2 * p + 3 * (2 * p + 1) + 4 * m.d_mlp + 6 * config.task.d_vocab_out + 6 * m.d_model


def _floats_per_train_row(config: RunConfig) -> int:
    """Autograd on ``fast.py``'s forward: what one train row keeps and adds in the backward."""
    m = config.model
    H, D, Dh, M, V = m.n_heads, m.d_model, m.d_head, m.d_mlp, config.task.d_vocab_out
    last_attention = 4 * H * D if m.n_layers == 1 else 6 * H * Dh
    earlier = (m.n_layers - 1) * 3 * (4 * M + 4 * H * Dh + 6 * D + 6 * H)
    return last_attention + 4 * M + 8 * V + 8 * D + 12 * H + earlier


def _floats_per_test_row(config: RunConfig) -> int:
    """The test forward under inference_mode: nothing kept for a backward."""
    m = config.model
    earlier = (m.n_layers - 1) * 3 * (2 * m.d_mlp + 4 * m.n_heads * m.d_head + 4 * m.d_model)
    return 2 * m.n_heads * m.d_model + 2 * m.d_mlp + 5 * config.task.d_vocab_out + 4 * m.d_model + earlier


def estimate(config: RunConfig, device_type: str = "cpu") -> Estimate:
    """Peak memory of training ``config`` on a device of ``device_type`` (cpu, cuda, mps);
    the formula is the module docstring's."""
    from grok_engine.store import AsyncWriter
    from grok_engine.train import MANUAL_MAX_P

    t, m = config.task, config.model
    trainable, total = trainable_parameters(config)
    manual = (device_type == "cpu" and t.p <= MANUAL_MAX_P and m.n_layers == 1 and m.normalization == "none"
              and m.act_fn == "relu" and config.train.freeze_biases)  # as Trainer.manual, for zero biases
    n_train, n_test = t.n_train, t.n_rows - t.n_train
    if manual:
        activations = FLOAT * t.n_rows * _floats_per_row_numpy(config)
    else:
        activations = FLOAT * max(n_train * _floats_per_train_row(config),
                                  n_test * _floats_per_test_row(config))
    grokfast = int(config.train.grokfast)
    event = FLOAT * (total + trainable * (2 + grokfast))
    largest_file = FLOAT * max(total, trainable * (2 + grokfast))
    checkpoints = (AsyncWriter.slots_for(event) + 1) * event + largest_file
    return Estimate(state=FLOAT * trainable * (4 + grokfast), activations=activations,
                    checkpoints=checkpoints, data_host=64 * t.n_rows, data_device=24 * t.n_rows,
                    on_gpu=device_type != "cpu")


def host_available() -> int | None:
    """Bytes of RAM available to a new allocation: MemAvailable on Linux, free pages
    elsewhere; None when the system does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def device_available(device) -> int | None:
    """Free bytes on a GPU (``torch.cuda.mem_get_info``); None when unknown (mps shares the
    host's memory, see :func:`check_fits`)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    return None


def check_fits(config: RunConfig, device) -> Estimate:
    """Raise :class:`GrokError` (one line: the estimate and what is available) when the
    run would not fit in memory; returns the estimate otherwise."""
    est = estimate(config, device.type)
    if device.type == "cuda":
        sides = [(f"{device} memory", est.device, device_available(device)),
                 ("memory", est.host, host_available())]
    else:  # the CPU, and mps (its memory is the host's)
        sides = [("memory", est.total, host_available())]
    for where, need, have in sides:
        if have is not None and need > have:
            raise GrokError(
                f"this run needs about {gib(need)} of {where} ({est.parts()}) but {gib(have)} "
                f"is available: choose a smaller p, d_model or d_mlp, or pass --force to train anyway")
    return est
