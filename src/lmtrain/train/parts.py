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
from lmtrain.distributed.world import World
from lmtrain.model.registry import build_model
from lmtrain.model.sizing import flops_per_token
from lmtrain.train.data import TrainingData, run_steps
from lmtrain.train.events import Plan
from lmtrain.train.feed import Feed, TextFeed
from lmtrain.train.optim import run_optimizer
from lmtrain.train.parallel import wrap_model
from lmtrain.train.schedule import run_schedule
from lmtrain.train.step import TrainStep


def build_training(
    cfg: RunConfig,
    *,
    tokens: np.ndarray | None = None,
    feed: Feed | None = None,
    device: torch.device,
    dtype: str,
    world: World | None = None,
    model: nn.Module | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    weights_from: Path | None = None,
    lr_of: Callable[[int], float] | None = None,
) -> TrainStep:
    """The optimizer step of `cfg`'s training on `feed` (or windows of `tokens`), as this rank of `world` (default: one process on `device`),
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
    runner = wrap_model(
        model, world, tc.distributed.parallel, tc.compile, dtype, activation_checkpointing=tc.activation_checkpointing
    )
    optimizer = run_optimizer(model, tc.optimizer, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    if feed is None:
        assert tokens is not None, "build_training needs tokens or a feed"
        feed = TextFeed(tokens, seq_len=cfg.seq_len, batch_size=tc.batch_size, seed=tc.seed)
    schedule = run_schedule(tc, run_steps(cfg, feed.steps_per_epoch))
    return TrainStep(
        model=model,
        runner=runner,
        optimizer=optimizer,
        scaler=scaler,
        schedule=schedule,
        feed=feed,
        accumulation=tc.layout(world.world_size).accumulation,
        grad_clip=tc.optimizer.grad_clip,
        device=device,
        dtype=dtype,
        skip_non_finite=tc.health.on_nan == "skip",
        world=world,
        lr_of=lr_of,
    )


def plan_of(
    cfg: RunConfig,
    step: TrainStep,
    data: TrainingData,
    *,
    start_step: int,
    stop_at: int,
    eval_windows: int,
    world: World,
    peak: float | None,
    parallel: str,
) -> Plan:
    """The plan a run announces at its start, from its parts (`peak`: the measured peak FLOP/s, None unmeasured)."""
    counts = cfg.model.param_counts()
    return Plan(
        total_steps=step.schedule.total_steps,
        stop_at=stop_at,
        start_step=start_step,
        tokens_per_step=cfg.train.layout(world.world_size).global_batch * cfg.seq_len,
        parameters=counts["total"],
        non_embedding_parameters=counts["non_embedding"],
        train_tokens=len(data.train),
        trained_share=data.trained_share(),
        valid_tokens=len(data.valid),
        steps_per_epoch=step.sampler.steps_per_epoch,
        eval_windows=eval_windows,
        device=str(step.device),
        dtype=step.dtype,
        flops_per_token=flops_per_token(cfg.model, cfg.seq_len),
        peak_flops=peak,
        world_size=world.world_size,
        parallel=parallel,
    )
