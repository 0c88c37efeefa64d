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
LOGIT_BYTES = 4
"""Bytes per row and vocabulary entry of a chunk: its fp32 logits, their gradient computed in the same tensor."""


def step_memory(
    cfg: ModelConfig, tokens: int, half: bool = False, *, muon: bool = False, checkpointing: bool = False
) -> int:
    """Bytes the tensors of a training step hold at its peak, for `tokens` tokens per micro-batch: the larger of
    - the forward pass's end, inside the fused head + loss: fp32 weights (4 bytes per parameter), the optimizer's
      state (AdamW: two moments, 8 bytes; Muon: one momentum, 4 bytes, for the blocks' matrices), under autocast the
      16-bit copies of the weights it keeps through the forward (2 bytes per matmul parameter), the activations the
      blocks keep (`activations_per_token`, 2 or 4 bytes each; with activation checkpointing each block's input and
      one block's recomputed activations), one chunk of fp32 logits (`LOGIT_BYTES` per row and vocabulary entry)
      and the head's fp32 gradient, which the fused loss computes in the same pass;
    - the backward pass's end: weights, state, every gradient (the blocks' were freed by the step before) and the
      larger of the first block's activations (recomputed, with activation checkpointing) and, for a tied embedding,
      the lookup's gradient before it is added to the head's.
    In fp32 within 0.95-1.00 of the peak of one step's tensor bytes on the CPU from 16M to 0.6B parameters, 1.12
    under bf16 autocast (bench/results/memory-cpu-2core.json); a process holds more than its tensors, an
    allocator's cache (peak resident memory on the CPU: 1.08-1.5x the estimate, measured there)."""
    counts = cfg.param_counts()
    weights = 4 * counts["total"]
    state = 8 * counts["total"] - (4 * counts["blocks"] if muon else 0)
    width = 2 if half else 4
    casts = 2 * (counts["total"] - counts["lookup"]) if half else 0
    per_block = cfg.activations_per_token() * tokens * width
    if checkpointing:
        activations = cfg.n_layer * cfg.d_model * tokens * width + per_block
    else:
        activations = cfg.n_layer * per_block
    head_grad = 4 * cfg.padded_vocab * cfg.d_model
    chunk = LOGIT_BYTES * min(tokens, LOSS_CHUNK_ROWS) * cfg.padded_vocab
    forward = weights + state + casts + activations + chunk + head_grad
    backward = weights + state + 4 * counts["total"] + max(head_grad if cfg.tied_head else 0, per_block)
    return max(forward, backward)


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
