"""Rotary position embeddings: the frequencies (unscaled, linear or Llama-3 scaled, as transformers' rope
initialisation functions compute them) and the rotation, halves laid out as Llama's rotate_half."""

from __future__ import annotations

import math

import torch

from lmtrain.model.config import ModernConfig


def inv_frequencies(cfg: ModernConfig, device: torch.device | None = None) -> torch.Tensor:
    """The rotation's inverse frequencies (hs/2,) in fp32: theta^(-2i/hs), scaled as cfg.rope_scaling says."""
    hs = cfg.head_size
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, hs, 2, device=device).float() / hs)  # (hs/2,)
    if cfg.rope_scaling == "linear":
        return inv_freq / cfg.rope_factor
    if cfg.rope_scaling == "llama3":
        return _llama3(inv_freq, cfg)
    return inv_freq


def _llama3(inv_freq: torch.Tensor, cfg: ModernConfig) -> torch.Tensor:
    """Llama 3.1's scaling: wavelengths longer than original / low_freq_factor divided by the factor, shorter than
    original / high_freq_factor kept, those between interpolated smoothly."""
    factor, low, high = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
    original = cfg.rope_original_max_seq_len
    wavelen = 2 * math.pi / inv_freq  # (hs/2,)
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return torch.where(medium, smoothed, scaled)


def rotary(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (..., T, hs), of the rotation at `positions` (..., T) with `inv_freq` (hs/2,)."""
    freqs = positions.float()[..., None] * inv_freq  # (..., T, hs/2)
    angles = torch.cat([freqs, freqs], dim=-1)  # (..., T, hs)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, nh, T, hs) rotated by (cos, sin) (T, hs) or (B, 1, T, hs): x*cos + rotate_half(x)*sin."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    turned = torch.cat([-x2, x1], dim=-1)  # (B, nh, T, hs)
    return x * cos.to(x.dtype) + turned * sin.to(x.dtype)
