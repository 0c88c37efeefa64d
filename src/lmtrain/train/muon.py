"""Muon for the matrices inside the blocks, AdamW for everything else, in one optimizer.

Muon (Jordan et al., 2024) replaces each 2-D gradient's momentum by its nearest semi-orthogonal matrix, computed with
five quintic Newton-Schulz iterations, the same update as `torch.optim.Muon`: Nesterov momentum 0.95, the
(3.4445, -4.775, 2.0315) iteration, decoupled weight decay and the learning rate scaled by sqrt(max(1, rows/cols)).
torch runs the iteration in bf16, which this CPU executes about 100x slower than fp32 (measured peaks 1.2 against
157 GFLOP/s): here it runs in bf16 on CUDA and in fp32 elsewhere.

Embeddings (the tied head), positions, biases and LayerNorm parameters are not matrices of a linear map between
hidden states, so they keep AdamW, in groups of their own with their own LR (`lr_scale` of the schedule's LR).
One optimizer keeps one state_dict, so a run resumes exactly. Under FSDP2 each rank gathers the whole update of
each matrix, runs the iteration on it and keeps its own shard of the result (the iteration is repeated on every
rank: simple, and small next to the forward and backward passes).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim.adamw import adamw

from lmtrain.runtime import FUSED_ADAMW_DEVICES
from lmtrain.train.parallel import shard_like, whole_tensor

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


def newton_schulz(grad: Tensor, steps: int = 5, dtype: torch.dtype | None = None, eps: float = 1e-7) -> Tensor:
    """The approximate orthogonalisation of a matrix, or of each matrix of a (k, m, n) stack, as torch's
    `_zeropower_via_newtonschulz` computes it, in `dtype` (default: bf16 on CUDA, fp32 elsewhere)."""
    if grad.ndim not in (2, 3):
        raise ValueError(f"Newton-Schulz needs a matrix or a stack of matrices, got shape {tuple(grad.shape)}")
    a, b, c = NS_COEFFICIENTS
    dtype = dtype or (torch.bfloat16 if grad.is_cuda else torch.float32)
    x = grad.to(dtype)
    x = x[None] if grad.ndim == 2 else x  # (k, m, n)
    tall = x.size(1) > x.size(2)
    if tall:
        x = x.transpose(1, 2)  # (k, n, m): the wide side first, so the Gram matrices are the small ones
    x = x / x.norm(dim=(1, 2), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.transpose(1, 2)  # (k, r, r)
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, update, x, beta=a)
    x = x.transpose(1, 2) if tall else x
    return x[0] if grad.ndim == 2 else x


class MuonAdamW(torch.optim.Optimizer):
    """Param groups with `muon=True` get Muon's update, the others AdamW's; every group has its own lr."""

    def __init__(
        self,
        groups: list[dict],
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.95),
        momentum: float = 0.95,
        eps: float = 1e-8,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        """`ns_dtype`: the Newton-Schulz precision (default bf16 on CUDA, fp32 elsewhere)."""
        defaults = dict(lr=lr, weight_decay=weight_decay, betas=betas, momentum=momentum, eps=eps, ns_steps=ns_steps)
        self.ns_dtype = ns_dtype
        defaults |= {"muon": False, "lr_scale": 1.0}
        super().__init__(groups, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon groups may only hold matrices")

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                self._muon(group, params)
            else:
                self._adamw(group, params)
        return loss

    def _muon(self, group: dict, params: list[Tensor]) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        by_shape: dict[tuple[int, ...], list[Tensor]] = {}
        for p in params:
            by_shape.setdefault(tuple(p.shape), []).append(p)
        for (rows, cols), same in by_shape.items():  # one batched iteration per shape
            updates = []
            for p in same:
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                updates.append(p.grad.lerp(buf, mu))  # Nesterov
            whole = [
                whole_tensor(u) for u in updates
            ]  # a sharded (FSDP2) update is gathered: the iteration needs it all
            ortho = newton_schulz(torch.stack(whole), group["ns_steps"], self.ns_dtype)  # (k, rows, cols)
            scale = -lr * math.sqrt(max(1.0, rows / cols))
            for p, o in zip(same, ortho):
                p.mul_(1 - lr * wd)
                p.add_(shard_like(o.to(p.dtype), p), alpha=scale)

    def _adamw(self, group: dict, params: list[Tensor]) -> None:
        """torch's own AdamW update (fused on CPU and CUDA) for this group."""
        avgs, sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                on_device = p.device.type in FUSED_ADAMW_DEVICES
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu")
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        adamw(
            params=params,
            grads=[p.grad for p in params],
            exp_avgs=avgs,
            exp_avg_sqs=sqs,
            max_exp_avg_sqs=[],  # amsgrad is off
            state_steps=steps,
            fused=True if params[0].device.type in FUSED_ADAMW_DEVICES else None,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
