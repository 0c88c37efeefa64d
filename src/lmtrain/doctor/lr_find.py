"""The learning-rate range test: a short run whose LR rises geometrically, and the peak LR it suggests.

From a fresh copy of the model, step i of n runs at lr_min * (lr_max / lr_min) ** (i / (n - 1)), on the run's own
batches, optimizer and precision (with Muon, its matrices keep their multiple of the LR). The training loss is
smoothed (an exponential average, bias-corrected) and the test stops once it exceeds 4x its lowest value. The
suggested peak LR is a tenth of the LR at the lowest smoothed loss: the loss still falls fast there, well short
of where training becomes unstable (Smith, 2017; fastai's `lr_find`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from lmtrain.config import RunConfig
from lmtrain.runtime import preserved_rng, seed_everything
from lmtrain.train.data import TrainingData
from lmtrain.train.parts import build_training

SMOOTHING = 0.9
DIVERGED = 4.0
"""The test stops once the smoothed loss exceeds this multiple of its lowest value."""


@dataclass(frozen=True)
class LRFind:
    """The LRs tried, the losses they gave, and the suggestion."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    """A tenth of the LR at the lowest smoothed loss."""
    stopped_early: bool

    def to_dict(self) -> dict:
        return {
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "suggested_lr": self.suggestion,
            "stopped_early": self.stopped_early,
        }


def ramp(step: int, steps: int, lr_min: float, lr_max: float) -> float:
    """The LR of step `step` (0-based) of `steps`, rising geometrically from lr_min to lr_max."""
    return lr_min * (lr_max / lr_min) ** (step / max(1, steps - 1))


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential average of `losses`."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """A tenth of the LR at the lowest smoothed loss."""
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    return lrs[best] / 10


def lr_range_test(
    cfg: RunConfig,
    data: TrainingData,
    *,
    device: torch.device,
    dtype: str,
    steps: int,
    lr_min: float,
    lr_max: float,
) -> LRFind:
    """Run the range test on a fresh model with the run's settings (uncompiled); RNG states are left as they were."""
    uncompiled = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=False))
    with preserved_rng():
        seed_everything(cfg.train.seed)
        step = build_training(
            uncompiled,
            feed=data.feed(uncompiled),
            device=device,
            dtype=dtype,
            lr_of=lambda i: ramp(i, steps, lr_min, lr_max),
        )
        step.model.train()
        lrs: list[float] = []
        losses: list[float] = []
        smoothed: list[float] = []
        stopped = False
        for i in range(steps):
            result = step(i)
            lrs.append(result.lr)
            losses.append(float(result.loss))
            smoothed = smooth(losses)
            if not math.isfinite(losses[-1]) or smoothed[-1] > DIVERGED * min(smoothed):
                stopped = True
                break
    finite = [(lr, s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    suggestion = suggest([lr for lr, _ in finite], [s for _, s in finite]) if finite else lr_min
    return LRFind(lrs, losses, smoothed, suggestion, stopped)


def plot(result: LRFind, path: Path, current_lr: float) -> Path:
    """Loss against LR (log scale), with the suggested and the configured peak LR marked."""
    from lmtrain.report.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result.lrs, result.losses, lw=0.8, alpha=0.4, label="training loss")
    ax.plot(result.lrs, result.smoothed, lw=1.6, label="smoothed")
    ax.axvline(result.suggestion, color="tab:green", ls="--", label=f"suggested --lr {result.suggestion:.2g}")
    ax.axvline(current_lr, color="tab:gray", ls=":", label=f"configured --lr {current_lr:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (AdamW groups; Muon's matrices at their multiple)")
    ax.set_ylabel("loss")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:
        ax.set_ylim(min(finite) - 0.5, min(max(finite), 2 * min(finite)) + 0.5)
    ax.legend()
    ax.set_title("LR range test")
    return save_figure(fig, path)
