"""One optimizer step: micro-batches with gradient accumulation, clipping and the update, values left on the device.

The step's loss, gradient norm and a non-finite flag stay on the device; the trainer reads them in one transfer
at its next log, evaluation or checkpoint point, so a step costs no host synchronisation. Only
`--on-nan skip` reads the flag every step, because skipping an update has to be decided before it is made.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from lmtrain.distributed.world import World
from lmtrain.runtime import autocast
from lmtrain.train.feed import Feed
from lmtrain.train.parallel import gradient_sync, whole_tensor
from lmtrain.train.schedule import ScheduleConfig, lr_at


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step produced; tensors are 0-d and stay on the device."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    bad: torch.Tensor
    """True when the loss (or, without loss scaling, the gradient norm) is not finite."""
    lr: float
    skipped: bool = False


@dataclass(kw_only=True)
class TrainStep:
    """Runs optimizer step `step` (0-based) of the run on the batch the sampler assigns to it."""

    model: nn.Module
    """The module whose parameters are updated (and clipped)."""
    runner: nn.Module
    """The module called for the forward pass (the model, or its compiled wrapper)."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: ScheduleConfig
    feed: Feed
    """The micro-batches of each step (windows of text, or packed conversations) and how their losses add up."""
    accumulation: int
    grad_clip: float
    device: torch.device
    dtype: str
    skip_non_finite: bool = False
    world: World = field(default_factory=World)
    """This rank trains on its own part of every global batch; gradients are synchronised on the last micro-step."""
    lr_of: Callable[[int], float] | None = None
    """The LR of each step instead of the schedule's (the LR range test's geometric ramp)."""

    @property
    def sampler(self):  # noqa: ANN201 - TrainSampler or ChatSampler
        """The feed's sampler (steps per epoch, the epoch of a step)."""
        return self.feed.sampler

    def __call__(self, step: int) -> StepResult:
        """Optimizer step `step`; the loss is this rank's share of the step's mean (the trainer averages it over
        ranks: for conversations each rank's share is scaled by the world size, so the average is the mean)."""
        lr = self.lr_of(step) if self.lr_of is not None else lr_at(step, self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        total = torch.zeros((), device=self.device)
        work = self.feed.step_batches(step, world=self.world, accumulation=self.accumulation, device=self.device)
        for i, batch in enumerate(work.batches):
            with gradient_sync(self.runner, self.model, sync=i == len(work.batches) - 1):
                with autocast(self.device, self.dtype):
                    if work.divisor is None:
                        _, loss = self.runner(batch.x, batch.y, **batch.inputs())
                        loss = loss / self.accumulation
                    else:
                        _, loss = self.runner(batch.x, batch.y, reduction="sum", **batch.inputs())
                        loss = loss / work.divisor
                self.scaler.scale(loss).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        clip = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = whole_tensor(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))  # FSDP2: a DTensor
        bad = ~torch.isfinite(total)
        if not self.scaler.is_enabled():  # with fp16 loss scaling an overflowing gradient is the scaler's to skip
            bad = bad | ~torch.isfinite(grad_norm)
        if self.skip_non_finite:  # every rank must decide alike
            bad = self.world.mean(bad.float()) > 0
        if self.skip_non_finite and bool(bad):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.step(self.optimizer)  # finds the non-finite gradients, skips, lowers the scale
                self.scaler.update()
            return StepResult(total, grad_norm.detach(), bad, lr, skipped=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(total, grad_norm.detach(), bad, lr)


class StepClock:
    """Wall time of training steps only: laps end at log points; evaluation and saving restart the clock."""

    def __init__(self) -> None:
        self.mark()
        self.laps = 0
        self.seconds = 0.0
        self.steps = 0

    def mark(self) -> None:
        """Start timing from now (after an evaluation or a checkpoint)."""
        self._t0 = time.perf_counter()

    def lap(self, steps: int) -> float:
        """Seconds since the last mark for `steps` steps; the run's totals leave out the first lap (warm-up)."""
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        if self.laps:
            self.seconds += seconds
            self.steps += steps
        self.laps += 1
        self.mark()
        return seconds
