"""GPT-2 decoder modules as transformers' GPT2LMHeadModel computes them (GPTConfig lives in config.py).

Pre-LayerNorm blocks, tanh-approximate GELU, learned absolute positions, token embedding tied to the
output projection, causal attention through `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from lmtrain.model.attention import attend
from lmtrain.model.base import CausalLM
from lmtrain.model.config import GPTConfig, LossImpl
from lmtrain.model.kv_cache import KVCache
from lmtrain.model.packing import Packing

__all__ = ["GPT", "GPTConfig"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused qkv projection (GPT-2's c_attn)."""

    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.attn_dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, packing: Packing | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        dropout_p = self.attn_dropout if self.training else 0.0
        y = attend(q, k, v, layer=self.layer_idx, cache=cache, packing=packing, dropout_p=dropout_p, enable_gqa=False)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: d_model -> d_ff -> d_model with tanh-approximate GELU."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.act = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, packing: Packing | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, packing)
        return x + self.mlp(self.ln_2(x))


class GPT(CausalLM):
    """GPT-2 language model; the output projection reuses the token embedding matrix."""

    def __init__(self, cfg: GPTConfig, loss_impl: LossImpl = "fused") -> None:
        super().__init__(cfg, loss_impl)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.padded_vocab, cfg.d_model),
                wpe=nn.Embedding(cfg.max_seq_len, cfg.d_model),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
                ln_f=nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps, bias=cfg.bias),
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, init_std) weights, zero biases, residual projections / sqrt(2L)."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, in order."""
        return list(self.transformer.h)

    @property
    def output_weight(self) -> torch.Tensor:
        """The tied token embedding (padded_vocab, C)."""
        return self.transformer.wte.weight

    @property
    def token_embedding(self) -> torch.Tensor:
        return self.transformer.wte.weight

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, packing: Packing | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) after ln_f for token ids `idx` (B, T).

        With `cache`, `idx` continues the sequence the cache holds and positions start after it; with `packing`,
        each row holds several sequences (their positions and attention as it says).
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if packing is not None:
            self.check_length(0, packing.length())
            pos = packing.positions  # (B, T)
        else:
            self.check_length(start, T)
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache, packing)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)  # (B, T, C)
