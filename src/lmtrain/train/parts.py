"""The parts of a training run, assembled in one place: model, wrapping, optimizer, loss scaler, schedule, sampler and
the optimizer step.

The trainer, the doctor's trial step, the LR range test and `lmtrain bench train` all call `build_training`, so the
four of them train exactly alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lmtrain import checkpoint as ckpt
from lmtrain.config import RunConfig
from lmtrain.model.registry import build_model
from lmtrain.train.data import run_length
from lmtrain.train.distributed import World
from lmtrain.train.optim import run_optimizer
from lmtrain.train.parallel import wrap_model
from lmtrain.train.schedule import run_schedule
from lmtrain.train.step import TrainStep


def build_training(
    cfg: RunConfig,
    *,
    tokens: np.ndarray,
    device: torch.device,
    dtype: str,
    world: World | None = None,
    model: nn.Module | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    weights_from: Path | None = None,
    lr_of: Callable[[int], float] | None = None,
) -> TrainStep:
    """The optimizer step of `cfg`'s training on `tokens`, as this rank of `world` (default: one process on `device`),
    holding every part: the model (checkpoints come from it), the module the step calls (compiled, DDP-wrapped or
    FSDP2-sharded as the run asks), the optimizer, the loss scaler, the schedule and the sampler.

    `model`: train this module instead of a new model of `cfg.model` (the benchmark's transformers model). `weights`:
    loaded into the model before it is wrapped (a resumed run; `weights_from` names their checkpoint in errors).
    `lr_of`: the LR of each step instead of the schedule's (the LR range test's ramp).
    """
    tc = cfg.train
    world = world or World(device=device, timeout_s=tc.distributed.timeout)
    if model is None:
        model = build_model(cfg.model).to(device)
    if weights is not None:
        ckpt.load_state_into(model, dict(weights), weights_from or Path("checkpoint"))
    runner = wrap_model(model, world, tc.distributed.parallel, tc.compile, dtype)
    optimizer = run_optimizer(model, tc.optimizer, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    sampler, total_steps = run_length(cfg, len(tokens))
    schedule = run_schedule(tc, total_steps)
    return TrainStep(
        model=model,
        runner=runner,
        optimizer=optimizer,
        scaler=scaler,
        schedule=schedule,
        sampler=sampler,
        tokens=tokens,
        seq_len=cfg.seq_len,
        accumulation=tc.layout(world.world_size).accumulation,
        grad_clip=tc.optimizer.grad_clip,
        device=device,
        dtype=dtype,
        skip_non_finite=tc.health.on_nan == "skip",
        world=world,
        lr_of=lr_of,
    )
