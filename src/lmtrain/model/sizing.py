"""FLOPs and memory of a model config, computed from the config alone (no model is built; no torch import).

Each architecture counts its own parameters (`ModelConfig.param_counts`); what follows is derived from those counts,
the same way for every architecture (documented in docs/training.md, Presets):
- params: every trainable parameter, a tied token embedding counted once, padded vocabulary rows included.
- non_embedding_params: params minus the token and position embeddings and an untied head (Kaplan et al., 2020).
- flops_per_token: training FLOPs per token, 6*N + 12*L*d*T (the PaLM / nanoGPT estimate), where
  N = params minus those only looked up (a position table, an untied input embedding; a tied embedding is the
  output projection, a real matmul, so it counts) and T is the context length.
"""

from __future__ import annotations

from lmtrain.model.config import ModelConfig


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, 6N + 12·L·d·T, with N the parameters that take part in matmuls and T the context
    length (default max_seq_len)."""
    counts = cfg.param_counts()
    n = counts["total"] - counts["lookup"]
    t = cfg.max_seq_len if seq_len is None else seq_len
    return 6 * n + 12 * cfg.n_layer * cfg.d_model * t


LOSS_CHUNK_ROWS = 1024
"""Rows of the fused head + loss computed at once (`model/head.py`: the CPU's chunk)."""
LOGIT_BYTES = 8
"""Bytes per row and vocabulary entry of a chunk: its fp32 logits and their gradient (softmax taken in place)."""


def step_memory(
    cfg: ModelConfig, tokens: int, half: bool = False, *, muon: bool = False, checkpointing: bool = False
) -> int:
    """Bytes a training step needs for `tokens` tokens per micro-batch: fp32 weights and gradients (8 bytes per
    parameter), the optimizer's state (AdamW: two moments, 8 bytes; Muon: one momentum, 4 bytes, for the blocks'
    matrices), the activations the blocks keep (`activations_per_token`, 2 or 4 bytes each; with activation
    checkpointing each block's input and one block's recomputed activations) and the fused head + loss: one chunk of
    fp32 logits and their gradient (`LOGIT_BYTES` per row and vocabulary entry) and the head's fp32 gradient. Within
    0.97-1.09 of the measured peak of one step on the CPU from 16M to 0.6B parameters
    (bench/results/memory-cpu-2core.json)."""
    counts = cfg.param_counts()
    state = 8 * counts["total"] - (4 * counts["blocks"] if muon else 0)
    width = 2 if half else 4
    per_block = cfg.activations_per_token() * tokens * width
    if checkpointing:
        activations = cfg.n_layer * cfg.d_model * tokens * width + per_block
    else:
        activations = cfg.n_layer * per_block
    head = LOGIT_BYTES * min(tokens, LOSS_CHUNK_ROWS) * cfg.padded_vocab + 4 * cfg.padded_vocab * cfg.d_model
    return 8 * counts["total"] + state + activations + head


def describe(cfg: ModelConfig) -> dict[str, int | float | bool | str]:
    """The architecture, the shape fields, params, non_embedding_params and flops_per_token."""
    counts = cfg.param_counts()
    return {
        "arch": cfg.arch,
        "d_model": cfg.d_model,
        "n_head": cfg.n_head,
        "n_layer": cfg.n_layer,
        "d_ff": cfg.d_ff,
        "max_seq_len": cfg.max_seq_len,
        "vocab_size": cfg.vocab_size,
        "dropout": cfg.dropout,
        "params": counts["total"],
        "non_embedding_params": counts["non_embedding"],
        "flops_per_token": flops_per_token(cfg),
    }
