"""Batches from a packed token stream: contiguous windows of seq_len+1 tokens, no padding.

Documents are packed back to back with <|endoftext|> between them, so a window may cross from one
document into the next, and a document longer than the context runs across several windows.
"""

from __future__ import annotations

import numpy as np
import torch


def window_starts(n_tokens: int, seq_len: int, offset: int = 0) -> np.ndarray:
    """Start positions offset + i*seq_len of every window of seq_len+1 tokens that fits in the stream.

    Consecutive windows share one token (the last target of one is the first input of the next), so
    every token after the first is a target exactly once.
    """
    if seq_len <= 0:
        raise ValueError(f"seq_len={seq_len} must be positive")
    count = max(0, (n_tokens - offset - 1) // seq_len)
    return offset + seq_len * np.arange(count, dtype=np.int64)


def eval_starts(n_tokens: int, seq_len: int, windows: int) -> np.ndarray:
    """Start positions of the validation windows: the first `windows` of the split (0: all), independent of
    batching: what `train` validates on, and `lmtrain eval --windows`."""
    starts = window_starts(n_tokens, seq_len)
    return starts[:windows] if windows else starts


def make_batch(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, seq_len) int64 from the windows tokens[s : s + seq_len + 1]."""
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])  # (B, T+1)
    batch = torch.from_numpy(rows)
    if torch.device(device).type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch[:, :-1], batch[:, 1:]  # (B, T), (B, T)


class TrainSampler:
    """Which windows each optimizer step trains on: a pure function of (seed, step).

    Epoch e cuts the stream into `windows` windows of seq_len+1 tokens starting at a random offset in
    [0, seq_len) (so window boundaries move between epochs) and visits them in a seeded random order,
    batch_size per step. Every epoch has the same number of steps, so the data position is the step.
    """

    def __init__(self, n_tokens: int, seq_len: int, batch_size: int, seed: int) -> None:
        self.n_tokens, self.seq_len, self.batch_size, self.seed = n_tokens, seq_len, batch_size, seed
        self.windows = max(0, (n_tokens - seq_len) // seq_len)
        self.steps_per_epoch = self.windows // batch_size
        self._epoch: int | None = None
        self._order = np.empty(0, dtype=np.int64)
        self._offset = 0

    def _plan(self, epoch: int) -> None:
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._offset = int(rng.integers(self.seq_len))
            self._order = rng.permutation(self.windows)
            self._epoch = epoch

    def batch_starts(self, step: int) -> np.ndarray:
        """Start positions of the batch_size windows of optimizer step `step` (0-based)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        self._plan(epoch)
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return self._offset + chosen * self.seq_len

    def epoch_of(self, step: int) -> float:
        """Fractional epoch after `step` optimizer steps."""
        return step / self.steps_per_epoch
