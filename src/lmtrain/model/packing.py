"""Several sequences in one row of token ids: a prompt shared by its continuations is computed once, each
continuation after it attending to the prompt and to itself only (what the benchmarks score)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Packing:
    """Where each token of a (B, T) batch sits in its own sequence, and which tokens of its row it attends to."""

    positions: torch.Tensor
    """(B, T) long: each token's position in its own sequence (0 at the sequence's first token)."""
    mask: torch.Tensor
    """(B, 1, T, K) bool: True where the query token (row) attends to the key token (column); every token attends at
    least to itself, so padding never makes a row of the softmax empty. K is T, or with a KV cache every position
    it holds after this forward (`eval/batch_generate.py`)."""

    @classmethod
    def of_segments(cls, segments: torch.Tensor) -> Packing:
        """The packing of rows (B, T) of segment ids, each segment contiguous: a token attends to the tokens of its
        own segment up to itself, and positions restart at 0 at each segment's first token."""
        B, T = segments.shape
        index = torch.arange(T, device=segments.device).expand(B, T)  # (B, T)
        first = torch.ones_like(segments, dtype=torch.bool)
        first[:, 1:] = segments[:, 1:] != segments[:, :-1]
        starts = torch.where(first, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, T)
        same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
        return cls(index - starts, (same & causal)[:, None])

    def attention(self) -> tuple[torch.Tensor, bool]:
        """(attn_mask, is_causal) for `F.scaled_dot_product_attention`."""
        return self.mask, False

    def length(self) -> int:
        """Positions a model must hold: the largest position plus one."""
        return int(self.positions.max()) + 1 if self.positions.numel() else 0
