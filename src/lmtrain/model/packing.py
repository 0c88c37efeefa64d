"""Several sequences in one row of token ids: a prompt shared by its continuations is computed once, each
continuation after it attending to the prompt and to itself only (what the benchmarks score), or packed
conversations (and documents under --doc-mask), each attending only to itself.

Rows of whole sequences (`of_segments`) attend through a dense (B, 1, T, T) mask on the CPU. On a GPU they attend
through FlexAttention with a block mask built from the segment ids: memory that does not grow as T², and blocks that
cross no sequence boundary skipped. FlexAttention has no attention dropout, so a training step with dropout uses the
dense mask there too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Packing:
    """Where each token of a (B, T) batch sits in its own sequence, and which tokens of its row it attends to."""

    positions: torch.Tensor
    """(B, T) long: each token's position in its own sequence (0 at the sequence's first token)."""
    given_mask: torch.Tensor | None = None
    """(B, 1, T, K) bool: True where the query token (row) attends to the key token (column); every token attends at
    least to itself, so padding never makes a row of the softmax empty. K is T, or with a KV cache every position
    it holds after this forward (`eval/batch_generate.py`). None: derived from `segments`."""
    segments: torch.Tensor | None = None
    """(B, T) segment ids of rows of whole sequences (`of_segments`): a token attends to its own segment, causally."""
    flex: bool = False
    """Attend through FlexAttention's block mask of `segments` (a GPU's default) instead of a dense mask."""

    @classmethod
    def of_segments(cls, segments: torch.Tensor, flex: bool | None = None) -> Packing:
        """The packing of rows (B, T) of segment ids, each segment contiguous: a token attends to the tokens of its
        own segment up to itself, and positions restart at 0 at each segment's first token. `flex`: attend through
        FlexAttention (default: on a GPU)."""
        B, T = segments.shape
        index = torch.arange(T, device=segments.device).expand(B, T)  # (B, T)
        first = torch.ones_like(segments, dtype=torch.bool)
        first[:, 1:] = segments[:, 1:] != segments[:, :-1]
        starts = torch.where(first, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, T)
        return cls(index - starts, segments=segments, flex=segments.is_cuda if flex is None else flex)

    @functools.cached_property
    def mask(self) -> torch.Tensor:
        """(B, 1, T, K) bool: the dense attention mask (built from the segments once, where none was given)."""
        if self.given_mask is not None:
            return self.given_mask
        assert self.segments is not None, "a Packing needs a mask or segments"
        T = self.segments.size(1)
        same = self.segments[:, :, None] == self.segments[:, None, :]  # (B, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=self.segments.device).tril()
        return (same & causal)[:, None]

    def attention(self) -> tuple[torch.Tensor, bool]:
        """(attn_mask, is_causal) for `F.scaled_dot_product_attention`."""
        return self.mask, False

    @functools.cached_property
    def block_mask(self) -> Any:
        """FlexAttention's block mask of the segments (built once per batch, shared by every layer)."""
        from torch.nn.attention.flex_attention import create_block_mask

        segments = self.segments
        assert segments is not None, "FlexAttention needs the segments"

        def same_segment_causal(b: Any, h: Any, q: Any, k: Any) -> Any:
            return (segments[b, q] == segments[b, k]) & (q >= k)

        B, T = segments.shape
        return create_block_mask(same_segment_causal, B, None, T, T, device=segments.device)

    def uses_flex(self, training_dropout: float) -> bool:
        """Whether attention goes through FlexAttention (not under attention dropout, which it does not have)."""
        return self.flex and training_dropout == 0.0

    def length(self) -> int:
        """Positions a model must hold: the largest position plus one."""
        return int(self.positions.max()) + 1 if self.positions.numel() else 0


def flex_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing, *, enable_gqa: bool
) -> torch.Tensor:
    """(B, nh, T, hs) attention of `q` over `k`, `v` within each segment of `packing`, through FlexAttention
    (compiled on a GPU, where its kernel runs; eager elsewhere, forward only)."""
    from torch.nn.attention.flex_attention import flex_attention

    attend = _compiled_flex() if q.is_cuda else flex_attention
    return attend(q, k, v, block_mask=packing.block_mask, enable_gqa=enable_gqa)


@functools.cache
def _compiled_flex() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)
