"""An exponential moving average of the weights, kept on the device beside the model being trained."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch.nn as nn

from lmtrain.train.parallel import shard_like


class EMA:
    """After optimizer step t: ema = d_t * ema + (1 - d_t) * weights, d_t = min(decay, (1 + t) / (10 + t)).

    The warm-up of d_t keeps the first steps from being dominated by the random initial weights, which matters
    in short runs. The average lives on the model's device, in the parameters' own form (sharded under FSDP2).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    def weight(self, step: int) -> float:
        """d_t after `step` optimizer steps."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the weights after optimizer step `step` (1 after the first) into the average."""
        keep = self.weight(step)
        for avg, p in zip(self.shadow, self.params):
            avg.lerp_(p.detach(), 1.0 - keep)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; afterwards its own again, bit for bit."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for p, avg in zip(self.params, self.shadow):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(self.params, own):
                    p.copy_(saved)

    @torch.no_grad()
    def load(self, model: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
        """Take the average from a checkpoint's whole (unsharded) EMA weights."""
        for (name, p), avg in zip(model.named_parameters(), self.shadow):
            avg.copy_(shard_like(weights[name].to(device=avg.device, dtype=avg.dtype), p))
