"""The model variants GGUF export is checked on against llama.cpp (the tests and `bench/gguf_variants.py`): each
architecture and option a GGUF architecture computes, three tokenizers, and the texts their token ids are compared on.
"""

from __future__ import annotations

TEXTS = (
    "Digits 1234567 and 3.14159, 2024-12-06, 007.",
    "Whitespace runs:    four spaces\n\n\n\ttab\t\tand\r\nCRLF   \n  trailing  ",
    "Non-ASCII: naïve café, Ünïcödé, Ελληνικά, 東京タワー, emoji 🙂👍, ½ – “quotes”.",
    "Special tokens: <|endoftext|> then <|im_start|>user\nhi<|im_end|> and <|endoftext|>",
    " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor .",
)
"""Texts whose token ids lmtrain and llama.cpp must agree on: digits, whitespace runs, non-ASCII, special tokens."""

BASE = ("--d-model", "64", "--n-head", "2", "--n-layer", "2", "--max-seq-len", "320", "--seq-len", "64")
BASE += ("--max-steps", "30", "--eval-windows", "8")
"""A two-block model of width 64 with room for 256 scored tokens and 32 generated ones, trained for 30 steps."""
MODERN = ("--arch", "modern", "--mlp", "swiglu")
"""The modern block as lmtrain trains it by default (QK-norm, tied head, no biases) but with SwiGLU: every llama.cpp
graph of this block gates with SiLU, so the default ReLU² MLP is refused (`test_gguf_errors.py`)."""
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "gpt2": (("--arch", "gpt2", "--max-seq-len", "1024"), "gpt2"),
    "modern-swiglu": (MODERN, "qwen3"),
    "swiglu-gqa-head-dim": ((*MODERN, "--n-head", "4", "--n-kv-head", "2", "--head-dim", "128"), "qwen3"),
    "qkv-bias": ((*MODERN, "--no-qk-norm", "--qkv-bias"), "qwen2"),
    "llama3-scaling": (
        (*MODERN, "--no-qk-norm", "--n-kv-head", "1", "--rope-scaling", "llama3", "--rope-factor", "8")
        + ("--rope-original-max-seq-len", "64", "--rope-low-freq-factor", "1", "--rope-high-freq-factor", "4"),
        "llama",
    ),
    "bpe16k": ((*MODERN, "--tokenizer", "BPE16K"), "qwen3"),
    "padded-vocab": ((*MODERN, "--vocab-size", "50304", "--pad-vocab-to", "100"), "qwen3"),
}
"""Variant -> (`lmtrain train` flags over BASE, the GGUF architecture it exports as). BPE16K stands for a 16,384-id
BPE trained on the sample by `lmtrain tokenizer train`; the padded vocabulary has 47 ids no token has (exported as
`[PAD{i}]`) and rows padded to a multiple of 100 (dropped on export). GPT-2's context is 1,024 and the grouped-query
variant's heads 128 wide, the only values transformers' GGUF loader reads for those (it maps `context_length` to
n_ctx, not n_positions, and leaves Qwen3's head_dim at its default)."""
