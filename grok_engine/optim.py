"""AdamW on one flat parameter vector, without ``torch.optim``.

Why not ``torch.optim.AdamW``: its constructor imports ``torch._dynamo`` (2-3 s on a 2-core
CPU, longer under load) — more than the whole p=10 training run takes with the fast forward.
This is the same update: decoupled weight decay, ``lerp`` first moment, bias-corrected
second moment, as in torch's AdamW; with ``torch._fused_adamw_`` (the kernel behind
``AdamW(fused=True)``) when this torch has it for the device, else torch's single-tensor
math, op for op.
"""

from __future__ import annotations

import math

import torch


class FlatAdamW:
    """AdamW for one tensor ``param`` (1-D) whose gradient is ``param.grad``.

    State: ``exp_avg``, ``exp_avg_sq`` (like ``param``) and ``step`` (a 0-d float32 tensor on
    the device, so a GPU step never syncs with the host).
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float],
                 weight_decay: float, eps: float = 1e-8):
        self.param = param
        self.lr, self.beta1, self.beta2 = lr, betas[0], betas[1]
        self.weight_decay, self.eps = weight_decay, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.step_t = torch.zeros((), dtype=torch.float32, device=param.device)
        self.fused = hasattr(torch, "_fused_adamw_")

    @torch.no_grad()
    def step(self) -> None:
        p, g = self.param.detach(), self.param.grad
        self.step_t += 1
        if self.fused:
            try:
                torch._fused_adamw_([p], [g], [self.exp_avg], [self.exp_avg_sq], [], [self.step_t],
                                    amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                                    weight_decay=self.weight_decay, eps=self.eps, maximize=False,
                                    grad_scale=None, found_inf=None)
                return
            except (RuntimeError, NotImplementedError):  # no fused kernel for this device
                self.fused = False
        step = float(self.step_t)  # host sync: only on devices without the fused kernel
        p.mul_(1 - self.lr * self.weight_decay)
        self.exp_avg.lerp_(g, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        step_size = self.lr / (1 - self.beta1 ** step)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - self.beta2 ** step)).add_(self.eps)
        p.addcdiv_(self.exp_avg, denom, value=-step_size)
