"""Validation loss: pure functions of a model and batches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from lmtrain.runtime import eval_mode


def loss_sums(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...] | tuple[torch.Tensor, torch.Tensor, Mapping[str, Any]]],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, int]:
    """(summed cross-entropy, target tokens) over `batches` of (inputs, targets) or (inputs, targets, the forward's
    other keyword arguments: packed rows' `packing`), in eval mode under no_grad; the mode is restored.

    A batch whose targets are all -100 adds nothing but is still run (sharded models gather weights in every
    forward, so every rank runs as many).
    """
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    with eval_mode(model), torch.no_grad():
        for batch in batches:
            x, y = batch[0], batch[1]
            extra = batch[2] if len(batch) > 2 else {}
            with autocast():
                _, loss = model(x, y, **extra)
            n = int((y != -100).sum())
            if n:
                total += loss.double().cpu() * n
                count += n
    return float(total), count


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Mean cross-entropy per target token over `batches`, in eval mode under no_grad (the mode is restored)."""
    total, count = loss_sums(model, batches, autocast)
    if count == 0:
        raise ValueError("no target tokens to evaluate")
    return total / count
