"""Conversations packed into rows of seq_len positions, each attending only to itself, positions restarting at each.

A conversation of L tokens takes L - 1 positions of a row: its inputs are ids[:-1], its targets ids[1:] where they
are trained and -100 where not. Conversations are packed first-fit decreasing (longest first, each into the first
row with room), once for the run: rows are full to within a few percent and their count is fixed, so an epoch is a
fixed number of steps and a step's rows are a pure function of (seed, step), as `TrainSampler`'s windows are. What
is left of a row is padding: inputs of the end-of-document id, targets -100, each its own sequence.

A conversation longer than seq_len + 1 tokens is refused (`overflow="refuse"`, the default: one line naming it) or
split (`overflow="split"`) into pieces of seq_len + 1 tokens that overlap by one token, as the pretraining windows do;
a piece after the first sees none of what came before it, and a piece with no trained target is left out. Nothing is
ever cropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lmtrain.data.chat import Overflow
from lmtrain.errors import DataError
from lmtrain.model.packing import Packing


def fit_pieces(
    starts: np.ndarray, mask: np.ndarray | Sequence[int], seq_len: int, overflow: Overflow, split: str
) -> np.ndarray:
    """(P, 2) int64 [start, end) of each piece of conversation ids that a row of `seq_len` positions holds: every
    conversation whole, or under `overflow="split"` the long ones cut as the module says."""
    lengths = np.diff(starts)
    long = np.nonzero(lengths > seq_len + 1)[0]
    if len(long) and overflow == "refuse":
        i = int(long[0])
        raise DataError(
            f"conversation {i} of the {split} split (in file order) is {int(lengths[i]):,} tokens, longer than "
            f"--seq-len {seq_len} + 1 ({len(long):,} such); raise --seq-len, or pass --chat-overflow split"
        )
    pieces = [np.stack([starts[:-1], starts[1:]], axis=1)[lengths <= seq_len + 1]]
    for i in long:
        begin, end = int(starts[i]), int(starts[i + 1])
        for s in range(begin, end - 1, seq_len):
            e = min(s + seq_len + 1, end)
            if np.asarray(mask[s + 1 : e]).any():
                pieces.append(np.array([[s, e]], dtype=np.int64))
    out = np.concatenate(pieces).astype(np.int64)
    return out[np.argsort(out[:, 0], kind="stable")]


def pack_rows(lengths: np.ndarray, capacity: int) -> list[np.ndarray]:
    """First-fit decreasing: the indices of the items (lengths in positions, each at most `capacity`) in each row."""
    n = len(lengths)
    if n and int(lengths.max()) > capacity:
        raise ValueError(f"an item of {int(lengths.max())} positions does not fit a row of {capacity}")
    size = 1
    while size < max(n, 1):
        size *= 2
    room = np.full(2 * size, capacity, dtype=np.int64)  # a max-tree of each row's room; unopened rows are empty
    rows: list[list[int]] = []
    for item in np.argsort(-lengths, kind="stable"):
        need, node = int(lengths[item]), 1
        while node < size:  # the leftmost row with room for it
            node = 2 * node if room[2 * node] >= need else 2 * node + 1
        row = node - size
        if row == len(rows):
            rows.append([])
        rows[row].append(int(item))
        room[node] -= need
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return [np.asarray(sorted(r), dtype=np.int64) for r in rows]


class ChatSampler:
    """The rows each optimizer step trains on: epoch e visits every row once in an order seeded by (seed, e),
    batch_size rows a step (the rows a last partial batch would take wait for the next epoch's order)."""

    def __init__(self, rows: int, batch_size: int, seed: int) -> None:
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.steps_per_epoch = rows // batch_size
        self._epoch: int | None = None
        self._order = np.empty(0, dtype=np.int64)

    def batch_rows(self, step: int) -> np.ndarray:
        """The batch_size row indices of optimizer step `step` (0-based)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._epoch != epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
            self._epoch = epoch
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch


def packed_batch(
    ids: np.ndarray,
    mask: np.ndarray,
    pieces: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    seq_len: int,
    pad_id: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, Packing]:
    """Inputs (B, T), targets (B, T) (-100 where not trained) and the Packing of `rows` (each a list of piece
    indices); T = seq_len."""
    count = len(rows)
    x = np.full((count, seq_len), pad_id, dtype=np.int64)
    y = np.full((count, seq_len), -100, dtype=np.int64)
    doc = np.tile(-1 - np.arange(seq_len, dtype=np.int64), (count, 1))  # padding: each position its own sequence
    for b, row in enumerate(rows):
        at = 0
        for k, piece in enumerate(row):
            start, end = (int(v) for v in pieces[piece])
            span = np.asarray(ids[start:end], dtype=np.int64)
            trained = np.asarray(mask[start + 1 : end]).astype(bool)
            n = end - start - 1
            x[b, at : at + n] = span[:-1]
            y[b, at : at + n] = np.where(trained, span[1:], -100)
            doc[b, at : at + n] = k
            at += n
    packing = Packing.of_segments(torch.from_numpy(doc).to(device))  # positions restart in each conversation
    x_t, y_t = (torch.from_numpy(a).to(device) for a in (x, y))
    return x_t, y_t, packing
