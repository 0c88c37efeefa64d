"""The optimizer of a run: AdamW (fused where the device has it), or Muon for the block matrices with AdamW for the
rest (`train/muon.py`). Weight decay applies only to tensors of two or more dimensions."""

from __future__ import annotations

import inspect

import torch

from lmtrain.defaults import MUON_LR_FACTOR
from lmtrain.model.base import CausalLM
from lmtrain.runtime import FUSED_ADAMW_DEVICES
from lmtrain.train.muon import MuonAdamW
from lmtrain.train_config import OptimizerConfig


def param_groups(model: CausalLM, weight_decay: float) -> list[dict]:
    """Two groups: matrices and embeddings (decayed), and norm weights and biases (not decayed)."""
    roles = model.parameter_roles()
    return [
        {"params": roles.matrices + roles.embeddings, "weight_decay": weight_decay},
        {"params": roles.vectors, "weight_decay": 0.0},
    ]


def muon_groups(model: CausalLM, weight_decay: float, muon_scale: float) -> list[dict]:
    """Three groups: the blocks' matrices (Muon, LR x `muon_scale`), the embeddings and an untied head (AdamW,
    decayed), and norm weights and biases (AdamW, not decayed)."""
    roles = model.parameter_roles()
    return [
        {"params": roles.matrices, "weight_decay": weight_decay, "muon": True, "lr_scale": muon_scale},
        {"params": roles.embeddings, "weight_decay": weight_decay},
        {"params": roles.vectors, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: CausalLM,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device: torch.device,
    kind: str = "adamw",
    muon_lr: float | None = None,
) -> torch.optim.Optimizer:
    """AdamW over `param_groups`, fused on CUDA and CPU when this torch supports it; or MuonAdamW over
    `muon_groups` with the Muon matrices at `muon_lr` (default MUON_LR_FACTOR x lr)."""
    if kind == "muon":
        scale = (muon_lr if muon_lr is not None else MUON_LR_FACTOR * lr) / lr
        return MuonAdamW(muon_groups(model, weight_decay, scale), lr=lr, weight_decay=weight_decay, betas=betas)
    fused_ok = "fused" in inspect.signature(torch.optim.AdamW).parameters and device.type in FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8, **({"fused": True} if fused_ok else {})
    )


def run_optimizer(model: CausalLM, oc: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer a run's optimizer section asks for."""
    return build_optimizer(
        model,
        lr=oc.peak_lr,
        weight_decay=oc.weight_decay,
        betas=(oc.beta1, oc.beta2),
        device=device,
        kind=oc.name,
        muon_lr=oc.peak_muon_lr,
    )
