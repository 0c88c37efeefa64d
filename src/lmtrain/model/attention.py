"""Scaled dot-product attention as every block computes it: causal over its own sequence, over a KV cache's positions
(decoding), over packed sequences' own tokens (a dense mask, or FlexAttention's block mask on a GPU), or both."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmtrain.model.kv_cache import KVCache
from lmtrain.model.packing import Packing, flex_attend


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    layer: int,
    cache: KVCache | None,
    packing: Packing | None,
    dropout_p: float,
    enable_gqa: bool,
) -> torch.Tensor:
    """(B, nh, T, hs) attention of the (B, nh, T, hs) queries over the (B, nkv, T, hs) keys and values of this forward
    (stored in `cache` first, with everything it holds before them) as `packing` allows."""
    if cache is None and packing is not None and packing.uses_flex(dropout_p):
        return flex_attend(q, k, v, packing, enable_gqa=enable_gqa)
    mask, causal = None, True
    if cache is not None:
        k, v, mask, causal = cache.attend(layer, q, k, v)  # keys and values: (B, nkv, start+T, hs)
    if packing is not None:  # with a cache too: rows of different lengths decoded together
        mask, causal = packing.attention()  # (B, 1, T, start+T)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, enable_gqa=enable_gqa
    )
