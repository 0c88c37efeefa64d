"""The learning-rate schedule: a pure function of the optimizer step, never of micro-steps or epochs.

Step s (0-based, counting optimizer updates) runs at:
- warmup, s < W:      lr * (s + 1) / W   (the first update is not at LR 0; step W-1 reaches lr)
- then, for s >= W, with p = (s - W) / (S - 1 - W) going from 0 to 1 over the remaining steps:
  cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2
  linear:   lr - (lr - min_lr) * p
  constant: lr
  wsd:      lr until the last `decay_fraction` of all steps, then linear to min_lr
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmtrain.errors import ConfigError

if TYPE_CHECKING:
    from lmtrain.train_config import TrainConfig


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Everything `lr_at` depends on."""

    lr: float
    """Peak learning rate."""
    min_lr: float
    """Learning rate at the end of the decay."""
    warmup: int
    """Warmup steps."""
    total_steps: int
    """Optimizer steps in the run."""
    kind: str = "cosine"
    """cosine, linear, constant or wsd."""
    decay_fraction: float = 0.2
    """wsd: share of all steps spent decaying."""

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "linear", "constant", "wsd"):
            raise ConfigError(f"schedule={self.kind!r} is not valid; choose one of cosine, linear, constant, wsd")
        if self.total_steps <= 0:
            raise ConfigError(f"the run has {self.total_steps} optimizer steps; it needs at least one")


def run_schedule(tc: TrainConfig, total_steps: int) -> ScheduleConfig:
    """The schedule a run's TrainConfig asks for over `total_steps` optimizer steps."""
    sc = tc.schedule
    return ScheduleConfig(
        lr=tc.optimizer.peak_lr,
        min_lr=tc.final_lr,
        warmup=sc.warmup_steps(total_steps),
        total_steps=total_steps,
        kind=sc.kind,
        decay_fraction=sc.decay_fraction,
    )


def lr_at(step: int, cfg: ScheduleConfig) -> float:
    """Learning rate of optimizer step `step` (0-based)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.kind == "constant":
        return cfg.lr
    last = cfg.total_steps - 1
    if cfg.kind == "wsd":
        decay_start = max(cfg.warmup, last - int(cfg.decay_fraction * cfg.total_steps))
        if step <= decay_start:
            return cfg.lr
        p = min(1.0, (step - decay_start) / max(1, last - decay_start))
        return cfg.lr - (cfg.lr - cfg.min_lr) * p
    p = min(1.0, (step - cfg.warmup) / max(1, last - cfg.warmup))
    if cfg.kind == "linear":
        return cfg.lr - (cfg.lr - cfg.min_lr) * p
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


LONG_WARMUP_SHARE = 0.2
"""A warmup at or above this share of the run is a WARN of the doctor."""


def check_warmup(cfg: ScheduleConfig, allow_long_warmup: bool) -> None:
    """A warmup at or above the total number of steps is a ConfigError unless explicitly allowed."""
    if cfg.warmup >= cfg.total_steps and not allow_long_warmup:
        raise ConfigError(
            f"warmup={cfg.warmup} is not shorter than the run's {cfg.total_steps} optimizer steps, so the LR "
            f"never reaches {cfg.lr:g}; lower --warmup, train longer, or pass --allow-long-warmup"
        )
