"""AdamW with weight decay only on tensors of two or more dimensions, fused where the device has it."""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices and embeddings (decayed), and biases and LayerNorm weights (not decayed)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused on CUDA and CPU when this torch supports it."""
    fused_ok = "fused" in inspect.signature(torch.optim.AdamW).parameters and device.type in ("cuda", "cpu")
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8, **({"fused": True} if fused_ok else {})
    )
