"""The modern decoder block (ModernConfig lives in config.py), as Llama / Qwen3 compute it.

Rotary positions (no position table; `rope.py`, optionally scaled), RMSNorm before attention and MLP and after the
last block, RMSNorm of each head's queries and keys before the rotation (QK-norm), no biases but optional q/k/v ones
(Qwen2), grouped-query attention with heads of any width, a ReLU² / SwiGLU / GELU MLP, and the attention and MLP
output projections initialised at zero (each block starts as the identity). The head is the token embedding, or an
untied matrix that starts at zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmtrain.model.attention import attend
from lmtrain.model.base import CausalLM
from lmtrain.model.config import LossImpl, ModernConfig
from lmtrain.model.kv_cache import KVCache
from lmtrain.model.packing import Packing
from lmtrain.model.rope import inv_frequencies, rotary, rotate


class Attention(nn.Module):
    """Causal self-attention with rotary positions, optional QK-norm and grouped key/value heads."""

    def __init__(self, cfg: ModernConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_size
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_size, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.attn_width, cfg.d_model, bias=False)
        self.q_norm = nn.RMSNorm(cfg.head_size, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(cfg.head_size, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.attn_dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None, packing: Packing | None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        hs = self.head_dim
        q, k, v = self.qkv(x).split([self.n_head * hs, self.n_kv * hs, self.n_kv * hs], dim=2)
        q = q.view(B, T, self.n_head, hs)  # (B, T, nh, hs)
        k = k.view(B, T, self.n_kv, hs)  # (B, T, nkv, hs)
        v = v.view(B, T, self.n_kv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = rotate(q.transpose(1, 2), *rope)  # (B, nh, T, hs)
        k = rotate(k.transpose(1, 2), *rope)  # (B, nkv, T, hs)
        dropout_p = self.attn_dropout if self.training else 0.0
        gqa = self.n_kv != self.n_head
        y = attend(q, k, v, layer=self.layer_idx, cache=cache, packing=packing, dropout_p=dropout_p, enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * hs)  # (B, T, nh*hs)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """relu2: down(relu(up x)²); swiglu: down(silu(gate x) * up x), gate and up in one matrix; gelu: down(gelu(up x))."""

    def __init__(self, cfg: ModernConfig) -> None:
        super().__init__()
        self.kind = cfg.mlp
        width = 2 * cfg.d_ff if cfg.mlp == "swiglu" else cfg.d_ff
        self.fc = nn.Linear(cfg.d_model, width, bias=False)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc(x)  # (B, T, f) or (B, T, 2f)
        if self.kind == "relu2":
            a = F.relu(a).square()
        elif self.kind == "swiglu":
            gate, up = a.chunk(2, dim=-1)  # 2 x (B, T, f)
            a = F.silu(gate) * up
        else:
            a = F.gelu(a)
        return self.dropout(self.proj(a))  # (B, T, C)


class Block(nn.Module):
    """Pre-RMSNorm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModernConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None, packing: Packing | None
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, cache, packing)
        return x + self.mlp(self.mlp_norm(x))


class Modern(CausalLM):
    """The modern decoder: token embedding, blocks, final RMSNorm, tied or untied head."""

    def __init__(self, cfg: ModernConfig, loss_impl: LossImpl = "fused") -> None:
        super().__init__(cfg, loss_impl)
        self.embed = nn.Embedding(cfg.padded_vocab, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = None if cfg.tie else nn.Linear(cfg.d_model, cfg.padded_vocab, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) embedding; input projections N(0, 0.5/sqrt(fan_in)) (modded-nanogpt's scale); norms at
        one; q/k/v biases, output projections and an untied head at zero."""
        nn.init.normal_(self.embed.weight, mean=0.0, std=self.config.init_std)
        for block in self.layers:
            for fc in (block.attn.qkv, block.mlp.fc):
                nn.init.normal_(fc.weight, mean=0.0, std=0.5 / math.sqrt(fc.in_features))
            if block.attn.qkv.bias is not None:
                nn.init.zeros_(block.attn.qkv.bias)
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)
        for module in self.modules():
            if isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        if self.head is not None:
            nn.init.zeros_(self.head.weight)

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, in order."""
        return list(self.layers)

    @property
    def output_weight(self) -> torch.Tensor:
        """The head (padded_vocab, C): the token embedding when tied."""
        return self.embed.weight if self.head is None else self.head.weight

    @property
    def token_embedding(self) -> torch.Tensor:
        return self.embed.weight

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, packing: Packing | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) after the last RMSNorm; with `cache`, positions start after its sequence;
        with `packing`, each row holds several sequences (their positions and attention as it says)."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        inv_freq = inv_frequencies(self.config, idx.device)  # (hs/2,)
        if packing is not None:
            self.check_length(0, packing.length())
            cos, sin = rotary(packing.positions, inv_freq)  # 2 x (B, T, hs)
            rope = cos[:, None], sin[:, None]  # 2 x (B, 1, T, hs)
        else:
            self.check_length(start, T)
            positions = torch.arange(start, start + T, device=idx.device)  # (T,)
            rope = rotary(positions, inv_freq)  # 2 x (T, hs)
        x = self.drop(self.embed(idx))  # (B, T, C)
        for block in self.layers:
            x = block(x, rope, cache, packing)
        if cache is not None:
            cache.advance(T)
        return self.norm(x)  # (B, T, C)
