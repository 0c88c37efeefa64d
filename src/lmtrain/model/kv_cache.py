"""Key/value cache for incremental decoding: one preallocated buffer per layer."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for the positions decoded so far.

    Buffers are preallocated to `max_len` positions; `length` counts the positions already stored.
    """

    def __init__(
        self,
        *,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (n_layer, batch_size, n_head, max_len, head_dim)  # (L, B, nh, Tmax, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' (B, nh, T, hs) keys and values; return all keys and values so far."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; cannot store position {end - 1}")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nh, end, hs)

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Store the new (B, nkv, T, hs) keys and values of `layer`; return (keys, values, attn_mask, is_causal) for
        `F.scaled_dot_product_attention` of the new (B, nh, T, hs) queries over every position so far."""
        start, T = self.length, q.size(2)
        k, v = self.update(layer, k, v)  # (B, nkv, start+T, hs)
        if start == 0:
            return k, v, None, True
        # query i sees keys 0..start+i
        mask = torch.ones(T, start + T, dtype=torch.bool, device=q.device).tril(diagonal=start) if T > 1 else None
        return k, v, mask, False

    def advance(self, n: int) -> None:
        """Mark `n` more positions as stored (called once per forward, after every layer)."""
        self.length += n
