"""What each optimizer step and each evaluation computes on: windows of a token stream, or packed conversations.

A feed gives this rank its micro-batches of step `step` (a pure function of the seed and the step, so a resumed run
continues on the same data) and of the validation set, and says how the step's losses add up:

- `TextFeed`: windows of seq_len + 1 tokens (`TrainSampler`); each micro-batch's loss is its mean, and the step's is
  their average (every window has as many targets).
- `ChatFeed`: rows of packed conversations (`data/chat/packing.py`), only assistant tokens trained; each
  micro-batch's loss is its sum over trained targets, divided by the step's count of trained targets over every
  rank (known from the rows before anything runs, so no collective is needed), times the world size, as DDP and
  FSDP2 average gradients over ranks. A short answer weighs as much per token as a long one, and a micro-batch with
  no trained target adds 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lmtrain.data.chat.packing import ChatSampler, Overflow, fit_pieces, pack_rows, packed_batch
from lmtrain.data.chat.prepare import ChatSplit
from lmtrain.data.loader import TrainSampler, eval_starts, make_batch
from lmtrain.distributed.world import World
from lmtrain.model.packing import Packing


@dataclass(frozen=True)
class Batch:
    """One micro-batch: inputs (B, T), targets (B, T) (-100: not trained) and, for packed rows, their Packing."""

    x: torch.Tensor
    y: torch.Tensor
    packing: Packing | None = None

    def inputs(self) -> dict[str, object]:
        """The keyword arguments of the model's forward besides x and y."""
        return {} if self.packing is None else {"packing": self.packing}


@dataclass(frozen=True)
class StepBatches:
    """This rank's micro-batches of one step, and how their losses are reduced."""

    batches: list[Batch]
    divisor: float | None
    """None: each loss is a mean, the step's their average; else each loss is a sum, divided by this."""


class TextFeed:
    """Windows of the token streams (the pretraining data)."""

    def __init__(
        self,
        train: np.ndarray,
        valid: np.ndarray | None = None,
        *,
        seq_len: int,
        batch_size: int,
        seed: int,
        eval_windows: int = 0,
        doc_mask_id: int | None = None,
    ) -> None:
        """`valid`: None for a feed that only trains (the doctor's trial step, the benchmarks); `eval_windows`: the
        first so many validation windows (0: all); `doc_mask_id`: the end-of-document id each document starts at,
        for windows whose tokens attend only within their document (--doc-mask; None: plain causal attention)."""
        self.train, self.valid, self.seq_len, self.doc_mask_id = train, valid, seq_len, doc_mask_id
        self.sampler = TrainSampler(len(train), seq_len, batch_size, seed)
        self.val_starts = eval_starts(len(valid), seq_len, eval_windows) if valid is not None else np.empty(0, int)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    @property
    def eval_windows(self) -> int:
        return len(self.val_starts)

    def epoch_of(self, step: int) -> float:
        return self.sampler.epoch_of(step)

    def step_batches(self, step: int, *, world: World, accumulation: int, device: torch.device) -> StepBatches:
        mine = self.sampler.batch_starts(step).reshape(world.world_size, -1)[world.rank]
        batches = [self._batch(self.train, s, device) for s in np.split(mine, accumulation)]
        return StepBatches(batches, None)

    def _batch(self, tokens: np.ndarray, starts: np.ndarray, device: torch.device) -> Batch:
        x, y = make_batch(tokens, starts, self.seq_len, device)
        if self.doc_mask_id is None:
            return Batch(x, y)
        return Batch(x, y, Packing.of_segments(torch.cumsum(x == self.doc_mask_id, dim=1)))

    def val_batches(self, *, world: World, micro: int, device: torch.device) -> Iterator[Batch]:
        """This rank's share of the validation windows (every world_size-th), in micro-batches; every rank yields as
        many (sharded models gather weights in every forward), those that run out with targets of -100."""
        assert self.valid is not None, "a feed without a validation split"
        valid, starts = self.valid, self.val_starts
        yield from _shares(len(starts), world, micro, lambda i: self._batch(valid, starts[i], device))


class PackedSplit:
    """One split's conversations cut to fit rows of seq_len positions and packed into rows, once for a run (the
    trainer, the doctor and the LR range test build their feeds from the same packing)."""

    def __init__(self, split: ChatSplit, seq_len: int, overflow: Overflow) -> None:
        self.seq_len, self.conversations = seq_len, split.examples
        self.end_of_turn = frozenset(int(i) for i in split.meta["end_of_turn_ids"])
        self.ids, self.mask = split.ids(), split.mask()
        self.pieces = fit_pieces(split.starts(), self.mask, seq_len, overflow, split.split)
        self.rows = pack_rows(self.pieces[:, 1] - self.pieces[:, 0] - 1, seq_len)
        trained = np.asarray([int(np.asarray(self.mask[s + 1 : e]).sum()) for s, e in self.pieces], dtype=np.int64)
        self.row_trained = np.asarray([int(trained[r].sum()) for r in self.rows], dtype=np.int64)


class ChatFeed:
    """Packed conversations, assistant tokens trained (`--dataset chat`)."""

    def __init__(
        self, train: PackedSplit, valid: PackedSplit, *, batch_size: int, seed: int, pad_id: int, eval_rows: int = 0
    ) -> None:
        """`eval_rows`: validate on that many packed rows of the held-out conversations, evenly spread over them (the
        rows are packed longest first: the first ones alone would hold the longest conversations); 0: every row."""
        self.seq_len, self.pad_id = train.seq_len, pad_id
        self.train, self.valid = train, valid
        self.sampler = ChatSampler(len(self.train.rows), batch_size, seed)
        count = len(valid.rows)
        chosen = min(count, eval_rows) if eval_rows else count
        self.val_rows = np.unique(np.linspace(0, count - 1, chosen).round().astype(np.int64)) if count else np.empty(0)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    @property
    def eval_windows(self) -> int:
        """The validation rows (of the held-out conversations, packed) each evaluation scores."""
        return len(self.val_rows)

    def epoch_of(self, step: int) -> float:
        return self.sampler.epoch_of(step)

    def _batch(self, packed: PackedSplit, rows: np.ndarray, device: torch.device) -> Batch:
        chosen = [packed.rows[r] for r in rows]
        x, y, packing = packed_batch(
            packed.ids, packed.mask, packed.pieces, chosen, seq_len=self.seq_len, pad_id=self.pad_id, device=device
        )
        return Batch(x, y, packing)

    def step_batches(self, step: int, *, world: World, accumulation: int, device: torch.device) -> StepBatches:
        rows = self.sampler.batch_rows(step)
        count = int(self.train.row_trained[rows].sum())
        mine = rows.reshape(world.world_size, -1)[world.rank]
        batches = [self._batch(self.train, part, device) for part in np.split(mine, accumulation)]
        return StepBatches(batches, max(count, 1) / world.world_size)

    def val_batches(self, *, world: World, micro: int, device: torch.device) -> Iterator[Batch]:
        rows = self.val_rows
        yield from _shares(len(rows), world, micro, lambda idx: self._batch(self.valid, rows[idx], device))


def _shares(count: int, world: World, micro: int, make: Callable[[np.ndarray], Batch]) -> Iterator[Batch]:
    """`make(indices)` for this rank's share of `count` items (every world_size-th) in micro-batches; every rank
    makes as many, those that run out a batch of item 0 with every target -100."""
    mine = np.arange(world.rank, count, world.world_size)
    batches = math.ceil(math.ceil(count / world.world_size) / micro)
    for i in range(batches):
        chosen = mine[i * micro : (i + 1) * micro]
        if len(chosen):
            yield make(chosen)
            continue
        made = make(np.arange(1))
        yield Batch(made.x, torch.full_like(made.y, -100), made.packing)


Feed = TextFeed | ChatFeed
