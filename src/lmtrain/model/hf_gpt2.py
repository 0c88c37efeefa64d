"""GPT-2 <-> transformers' GPT2LMHeadModel: state dicts and config.json (the `gpt2` architecture's adapter).

Parameter names are GPT-2's, so the mapping is the Conv1D transpose (transformers stores those
weights as (in, out); lmtrain's nn.Linear stores (out, in)) and the tied `lm_head.weight`.
Nothing here imports transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.config import GPTConfig
from lmtrain.model.hf_common import unpadded

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
"""Weights that transformers keeps in Conv1D (in, out) layout."""

_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")
"""Non-parameter buffers older transformers checkpoints carry; they hold no learned values."""

MODEL_TYPES = ("gpt2",)
"""The transformers model types this adapter reads."""
TIED_HEAD = "lm_head.weight"
TOKEN_EMBEDDING = "transformer.wte.weight"


def _is_conv1d(key: str) -> bool:
    return key.startswith("transformer.h.") and key.endswith(CONV1D_SUFFIXES)


def to_hf_state_dict(
    state: Mapping[str, torch.Tensor], cfg: GPTConfig, include_head: bool = False
) -> dict[str, torch.Tensor]:
    """transformers GPT-2 state dict from an lmtrain one (padding rows dropped); `include_head` adds the tied
    lm_head.weight."""
    out = {k: (v.t().contiguous() if _is_conv1d(k) else v) for k, v in state.items()}
    out[TOKEN_EMBEDDING] = unpadded(out[TOKEN_EMBEDDING], cfg.vocab_size)
    if include_head:
        out[TIED_HEAD] = out[TOKEN_EMBEDDING]
    return out


def from_hf_state_dict(state: Mapping[str, torch.Tensor], cfg: GPTConfig | None = None) -> dict[str, torch.Tensor]:
    """lmtrain state dict from a transformers GPT-2 one (with or without the `transformer.` prefix).

    A separate lm_head.weight must equal the token embedding: lmtrain's head is always tied.
    """
    out: dict[str, torch.Tensor] = {}
    head = None
    for key, value in state.items():
        if key == TIED_HEAD:
            head = value
            continue
        if key.endswith(_HF_BUFFERS):
            continue
        full = key if key.startswith("transformer.") else f"transformer.{key}"
        out[full] = value.t().contiguous() if _is_conv1d(full) else value
    if TOKEN_EMBEDDING not in out:
        raise ConfigError("not a GPT-2 checkpoint: it has no token embedding (transformer.wte.weight)")
    if head is not None and not torch.equal(head, out[TOKEN_EMBEDDING]):
        raise ConfigError("the checkpoint's lm_head.weight differs from its token embedding; lmtrain ties them")
    return out


def to_hf_config(cfg: GPTConfig) -> dict[str, Any]:
    """config.json contents for transformers' GPT2LMHeadModel with the same architecture."""
    if not cfg.bias:
        raise ConfigError("--no-bias: transformers' GPT-2 always has biases, so this model cannot be exported")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.d_ff,
        "activation_function": "gelu_new",
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": cfg.init_std,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def from_hf_config(hf: Mapping[str, Any]) -> GPTConfig:
    """GPTConfig from a transformers GPT-2 config.json; variants lmtrain does not compute are errors."""
    if hf.get("model_type") != "gpt2":
        raise ConfigError(f"config.json has model_type={hf.get('model_type')!r}; only 'gpt2' can be imported")
    checks = {
        "activation_function": ("gelu_new", hf.get("activation_function", "gelu_new")),
        "scale_attn_weights": (True, hf.get("scale_attn_weights", True)),
        "scale_attn_by_inverse_layer_idx": (False, hf.get("scale_attn_by_inverse_layer_idx", False)),
        "reorder_and_upcast_attn": (False, hf.get("reorder_and_upcast_attn", False)),
        "add_cross_attention": (False, hf.get("add_cross_attention", False)),
        "tie_word_embeddings": (True, hf.get("tie_word_embeddings", True)),
    }
    for key, (want, got) in checks.items():
        if got != want:
            raise ConfigError(f"config.json has {key}={got!r}; lmtrain's GPT-2 needs {want!r}")
    n_embd = int(hf["n_embd"])
    n_inner = hf.get("n_inner")
    return GPTConfig(
        vocab_size=int(hf["vocab_size"]),
        n_layer=int(hf["n_layer"]),
        n_head=int(hf["n_head"]),
        d_model=n_embd,
        d_ff=int(n_inner) if n_inner is not None else 4 * n_embd,
        max_seq_len=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
        dropout=float(hf.get("resid_pdrop", 0.1)),
        bias=True,
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )
