"""Parameter and FLOP counts of a model config, computed from the config alone (no model is built).

Definitions (documented in docs/training.md, Presets):
- params: every trainable parameter, a tied token embedding counted once, padded vocabulary rows included.
- non_embedding_params: params minus the token and position embeddings and an untied head (Kaplan et al., 2020).
- flops_per_token: training FLOPs per token, 6*N + 12*L*d*T (the PaLM / nanoGPT estimate), where
  N = params minus those only looked up (a position table, an untied input embedding; a tied embedding is the
  output projection, a real matmul, so it counts) and T is the context length.
"""

from __future__ import annotations

from lmtrain.model.config import GPTConfig, ModelConfig, ModernConfig


def _total(counts: dict[str, int], lookup: int) -> dict[str, int]:
    counts["total"] = sum(counts.values())
    counts["non_embedding"] = counts["blocks"] + counts["final_norm"]
    counts["lookup"] = lookup
    return counts


def gpt2_counts(cfg: GPTConfig) -> dict[str, int]:
    """GPT-2's parameter counts by group: token and position embeddings, blocks, final LayerNorm, total."""
    d, f, b = cfg.d_model, cfg.d_ff, int(cfg.bias)
    ln = d * (1 + b)
    attn = d * 3 * d + 3 * d * b + d * d + d * b
    mlp = d * f + f * b + f * d + d * b
    counts = {
        "token_embedding": cfg.padded_vocab * d,
        "position_embedding": cfg.max_seq_len * d,
        "blocks": cfg.n_layer * (2 * ln + attn + mlp),
        "final_norm": ln,
    }
    return _total(counts, lookup=counts["position_embedding"])


def modern_counts(cfg: ModernConfig) -> dict[str, int]:
    """The modern block's parameter counts: token embedding, untied head, blocks, final RMSNorm, total."""
    d, hs = cfg.d_model, cfg.head_dim
    attn = d * (cfg.n_head + 2 * cfg.kv_heads) * hs + d * d + (2 * hs if cfg.qk_norm else 0)
    mlp = 3 * d * cfg.d_ff if cfg.mlp == "swiglu" else 2 * d * cfg.d_ff
    counts = {
        "token_embedding": cfg.padded_vocab * d,
        "output_head": 0 if cfg.tie else cfg.padded_vocab * d,
        "blocks": cfg.n_layer * (2 * d + attn + mlp),
        "final_norm": d,
    }
    return _total(counts, lookup=0 if cfg.tie else counts["token_embedding"])


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts by group (the architecture's own sizing in the registry), with `total`, `non_embedding`
    (blocks and final norm) and `lookup` (parameters only looked up, never multiplied: position tables, an untied
    input embedding)."""
    from lmtrain.model.registry import arch_of

    return arch_of(cfg).sizing(cfg)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, 6N + 12·L·d·T, with N the parameters that take part in matmuls and T the context
    length (default max_seq_len)."""
    counts = param_counts(cfg)
    n = counts["total"] - counts["lookup"]
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


def step_memory(cfg: ModelConfig, tokens: int, half: bool = False) -> int:
    """Bytes a training step needs for `tokens` tokens per micro-batch: fp32 weights, gradients and AdamW moments
    (16 bytes per parameter), activations (34·d bytes per token and layer in 16-bit, Korthikanti et al., 2022, with
    no s² term as SDPA keeps no attention matrix) and the logits with their fp32 log-softmax and gradients
    (20 bytes per token and vocabulary entry, fitted to a measured CPU peak)."""
    activations = cfg.n_layer * 34 * tokens * cfg.d_model * (1 if half else 2)
    return 16 * param_counts(cfg)["total"] + activations + 20 * tokens * cfg.padded_vocab


def describe(cfg: ModelConfig) -> dict[str, int | float | bool | str]:
    """The architecture, the shape fields, params, non_embedding_params and flops_per_token."""
    counts = param_counts(cfg)
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
