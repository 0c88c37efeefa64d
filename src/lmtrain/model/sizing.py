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


def step_memory(cfg: ModelConfig, tokens: int, half: bool = False) -> int:
    """Bytes a training step needs for `tokens` tokens per micro-batch: fp32 weights, gradients and AdamW moments
    (16 bytes per parameter), activations (34·d bytes per token and layer in 16-bit, Korthikanti et al., 2022, with
    no s² term as SDPA keeps no attention matrix) and the logits with their fp32 log-softmax and gradients
    (20 bytes per token and vocabulary entry, fitted to a measured CPU peak)."""
    activations = cfg.n_layer * 34 * tokens * cfg.d_model * (1 if half else 2)
    return 16 * cfg.param_counts()["total"] + activations + 20 * tokens * cfg.padded_vocab


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
