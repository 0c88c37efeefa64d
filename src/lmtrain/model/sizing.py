"""Parameter and FLOP counts of a GPTConfig, computed from the config alone (no model is built).

Definitions (documented in docs/training.md, Presets):
- params: every trainable parameter, the tied token embedding counted once.
- non_embedding_params: params minus the token and position embeddings (Kaplan et al., 2020).
- flops_per_token: training FLOPs per token, 6*N + 12*L*d*T (the PaLM / nanoGPT estimate), where
  N = params minus the position embeddings (the tied token embedding is the output projection, a real
  matmul, so it counts; a position lookup does not) and T is the context length.
"""

from __future__ import annotations

from lmtrain.model.config import GPTConfig


def param_counts(cfg: GPTConfig) -> dict[str, int]:
    """Parameter counts by group: token and position embeddings, blocks, final LayerNorm, total."""
    d, f, b = cfg.d_model, cfg.d_ff, int(cfg.bias)
    ln = d * (1 + b)
    attn = d * 3 * d + 3 * d * b + d * d + d * b
    mlp = d * f + f * b + f * d + d * b
    per_block = 2 * ln + attn + mlp
    counts = {
        "token_embedding": cfg.vocab_size * d,
        "position_embedding": cfg.max_seq_len * d,
        "blocks": cfg.n_layer * per_block,
        "final_norm": ln,
    }
    counts["total"] = sum(counts.values())
    counts["non_embedding"] = counts["blocks"] + counts["final_norm"]
    return counts


def flops_per_token(cfg: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, 6N + 12·L·d·T, with T the context length (default max_seq_len)."""
    counts = param_counts(cfg)
    n = counts["total"] - counts["position_embedding"]
    t = cfg.max_seq_len if seq_len is None else seq_len
    return 6 * n + 12 * cfg.n_layer * cfg.d_model * t


def mfu(tokens_per_s: float, flops_per_token: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: the training FLOP/s a throughput stands for, over a peak FLOP/s."""
    return tokens_per_s * flops_per_token / peak_flops


PEAK_REFRESH = "lmtrain bench peak --refresh"
"""The command that measures the peak FLOP/s again and replaces the cached one."""


def mfu_text(utilisation: float) -> str:
    """An MFU as people read it: a percentage, and above 100% the note that the peak is stale and how to refresh it."""
    stale = f" (above the measured peak: {PEAK_REFRESH})" if utilisation > 1.0 else ""
    return f"{utilisation:.1%}{stale}"


def step_memory(cfg: GPTConfig, tokens: int, half: bool = False) -> int:
    """Bytes a training step needs for `tokens` tokens per micro-batch: fp32 weights, gradients and AdamW moments
    (16 bytes per parameter), activations (34·d bytes per token and layer in 16-bit, Korthikanti et al., 2022, with
    no s² term as SDPA keeps no attention matrix) and the logits with their fp32 log-softmax and gradients
    (20 bytes per token and vocabulary entry, fitted to a measured CPU peak)."""
    activations = cfg.n_layer * 34 * tokens * cfg.d_model * (1 if half else 2)
    return 16 * param_counts(cfg)["total"] + activations + 20 * tokens * cfg.vocab_size


def describe(cfg: GPTConfig) -> dict[str, int | float | bool]:
    """The config's fields plus params, non_embedding_params and flops_per_token."""
    counts = param_counts(cfg)
    return {
        "d_model": cfg.d_model,
        "n_head": cfg.n_head,
        "n_layer": cfg.n_layer,
        "d_ff": cfg.d_ff,
        "max_seq_len": cfg.max_seq_len,
        "vocab_size": cfg.vocab_size,
        "dropout": cfg.dropout,
        "bias": cfg.bias,
        "params": counts["total"],
        "non_embedding_params": counts["non_embedding"],
        "flops_per_token": flops_per_token(cfg),
    }
