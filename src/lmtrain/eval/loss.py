"""Mean validation loss: a pure function of a model and batches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Mean cross-entropy per target token over `batches`, in eval mode under no_grad.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        with torch.no_grad():
            for x, y in batches:
                with autocast():
                    _, loss = model(x, y)
                n = int((y != -100).sum())
                total += loss.double().cpu() * n
                count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no target tokens to evaluate")
    return float(total / count)
