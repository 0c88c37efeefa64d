"""Items scored many at a time: packed rows (`encode.pack`) sorted by length and batched up to a token budget, one
forward pass per batch, and the next-token loss computed only where an option is scored.

The outcome of an item is what the one-at-a-time rules give (`bench/tasks_reference.py` is that reference):
multiple choice and schema: the option with the lowest mean loss over its scored tokens (the first of equal ones;
an option with no scored token has a NaN mean and is chosen only where it comes first, as Python's `min` does);
language modelling: right when every scored token is the greedy (argmax) prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.base import CausalLM
from lmtrain.model.packing import Packing
from lmtrain.runtime import eval_mode
from lmtrain.tasks.encode import Encoded, Unit, pack

CPU_BATCH_TOKENS = 8192
"""Padded tokens per forward pass on the CPU."""
GPU_BATCH_TOKENS = 65536
"""Padded tokens per forward pass on a GPU."""


def check_budget(budget: int | None) -> None:
    """A ConfigError unless `budget` (--batch-tokens) is None (the device's default) or at least 1."""
    if budget is not None and budget < 1:
        raise ConfigError(f"--batch-tokens {budget} must be at least 1")


@dataclass(frozen=True)
class Outcome:
    """How the model answered one item."""

    correct: bool
    choice: int | None
    """The option chosen (multiple choice, schema); None for language modelling."""
    mean_losses: tuple[float, ...]
    """Per option, the mean loss of its scored tokens (language modelling: one; chat_choice: each letter's -log p
    among the letters; chat_answer: none)."""
    reply: str | None = None
    """chat_answer: the model's reply."""


def decide(mean_losses: Sequence[float], greedy_all: bool, gold: int | None) -> Outcome:
    """The outcome from the per-option mean losses (gold given) or from the greedy match (gold None)."""
    if gold is None:
        return Outcome(greedy_all, None, tuple(mean_losses))
    choice = list(mean_losses).index(min(mean_losses))  # Python's min: the first of equal ones; NaN as it orders
    return Outcome(choice == gold, choice, tuple(mean_losses))


def batches(units: Sequence[Unit], budget: int) -> list[list[int]]:
    """Indices of `units`, longest first, in batches of at most `budget` padded tokens (a longer unit alone)."""
    order = sorted(range(len(units)), key=lambda i: -len(units[i]))
    found: list[list[int]] = []
    for i in order:
        if found and (len(found[-1]) + 1) * len(units[found[-1][0]]) <= budget:
            found[-1].append(i)
        else:
            found.append([i])
    return found


def _tensors(units: Sequence[Unit], device: torch.device) -> tuple[torch.Tensor, Packing]:
    """(token ids (B, T), packing) of `units` right-padded to the longest; a padding token attends to itself only."""
    B, T = len(units), max(len(u) for u in units)
    idx = torch.zeros(B, T, dtype=torch.long)
    positions = torch.zeros(B, T, dtype=torch.long)
    branch = torch.full((B, T), -1, dtype=torch.long)  # -1: padding
    for b, u in enumerate(units):
        n = len(u)
        idx[b, :n] = torch.tensor(u.tokens)
        positions[b, :n] = torch.tensor(u.positions)
        branch[b, :n] = torch.tensor(u.branch)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    q, k = branch[:, :, None], branch[:, None, :]  # (B, T, 1), (B, 1, T)
    same = (k == 0) & (q >= 0) | (k == q)  # the prefix, or the query's own option (padding: itself, below)
    mask = causal & same  # (B, T, T)
    mask |= torch.eye(T, dtype=torch.bool)  # every token sees itself
    packing = Packing(positions.to(device), mask[:, None].to(device))  # mask (B, 1, T, T)
    return idx.to(device), packing


@torch.no_grad()
def score_items(
    model: CausalLM,
    items: Sequence[Encoded],
    *,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    budget: int | None = None,
) -> list[Outcome]:
    """The outcome of every item, its sequences packed into rows (`encode.pack`) and the rows scored in batches."""
    budget = budget or (CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS)
    units, owner = [], []
    for i, item in enumerate(items):
        for unit in pack(item, model.config.d_model):
            units.append(unit)
            owner.append(i)
    nll_of: list[list[list[float]]] = [[[] for _ in item.options] for item in items]
    greedy_of: list[list[list[bool]]] = [[[] for _ in item.options] for item in items]
    with eval_mode(model):
        for batch in batches(units, budget):
            chosen = [units[u] for u in batch]
            idx, packing = _tensors(chosen, device)
            with autocast():
                h = model.hidden(idx, packing=packing)  # (B, T, C)
            rows, cols, targets = [], [], []
            for b, unit in enumerate(chosen):
                for _, at, goal in unit.scored:
                    rows += [b] * len(at)
                    cols += at
                    targets += goal
            at_rows = torch.tensor(rows, dtype=torch.long, device=device)
            picked = h[at_rows, torch.tensor(cols, dtype=torch.long, device=device)]  # (M, C)
            scored = model.token_losses(picked.float(), torch.tensor(targets, dtype=torch.long, device=device))
            nll, greedy = scored.nll.tolist(), scored.greedy.tolist()
            start = 0
            for u, unit in zip(batch, chosen):
                for k, at, _ in unit.scored:
                    nll_of[owner[u]][k] = nll[start : start + len(at)]
                    greedy_of[owner[u]][k] = greedy[start : start + len(at)]
                    start += len(at)
    outcomes = []
    for item, nlls, greedys in zip(items, nll_of, greedy_of):
        means = [math.fsum(n) / len(n) if n else math.nan for n in nlls]
        outcomes.append(decide(means, all(g and all(g) for g in greedys), item.gold))
    return outcomes
