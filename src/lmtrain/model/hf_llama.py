"""The modern block <-> transformers' LlamaForCausalLM (no QK-norm) and Qwen3ForCausalLM (QK-norm): state dicts and
config.json. Nothing here imports transformers.

Both classes compute rotary positions with rotate_half, RMSNorm in fp32, SwiGLU as down(act(gate x) * up x) and
no biases, as `model/modern.py` does. A ReLU² MLP is exported in its exact gated form: gate and up hold the same
matrix and hidden_act is relu, since relu(a) * a = relu(a)². What no class computes exactly (soft-capped logits, a
GELU MLP) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.config import ModernConfig
from lmtrain.model.hf_common import unpadded

MODEL_TYPES = ("llama", "qwen3")
"""The transformers model types this adapter reads."""

_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
_ATTN = {"attn.proj": "self_attn.o_proj", "attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm"}


def _exportable(cfg: ModernConfig) -> None:
    if cfg.logit_softcap is not None:
        raise ConfigError(
            f"--logit-softcap {cfg.logit_softcap:g}: no transformers class soft-caps logits the way lmtrain does; "
            f"train without it to export"
        )
    if cfg.mlp == "gelu":
        raise ConfigError("--mlp gelu: no transformers Llama-family class has an ungated GELU MLP; use relu2 or swiglu")


def to_hf_config(cfg: ModernConfig) -> dict[str, Any]:
    """config.json for the transformers class `cfg` equals: Qwen3ForCausalLM with QK-norm, else LlamaForCausalLM."""
    _exportable(cfg)
    qwen = cfg.qk_norm
    out: dict[str, Any] = {
        "architectures": ["Qwen3ForCausalLM" if qwen else "LlamaForCausalLM"],
        "model_type": "qwen3" if qwen else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu" if cfg.mlp == "swiglu" else "relu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie,
        "initializer_range": cfg.init_std,
        "torch_dtype": "float32",
    }
    if qwen:
        out |= {"use_sliding_window": False, "sliding_window": None}
    else:
        out["mlp_bias"] = False
    return out


def to_hf_state_dict(
    state: Mapping[str, torch.Tensor], cfg: ModernConfig, include_head: bool = False
) -> dict[str, torch.Tensor]:
    """transformers' state dict from lmtrain's: padding rows dropped, qkv split, the MLP in its gated form;
    `include_head` adds a tied lm_head.weight (an untied one is always there)."""
    _exportable(cfg)
    hs, v = cfg.head_dim, cfg.vocab_size
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "embed.weight":
            out["model.embed_tokens.weight"] = unpadded(value, v)
        elif key == "head.weight":
            out["lm_head.weight"] = unpadded(value, v)
        elif key == "norm.weight":
            out["model.norm.weight"] = value
        else:
            _, i, rest = key.split(".", 2)  # layers.{i}.{rest}
            out |= _layer_to_hf(f"model.layers.{i}.", rest, value, cfg, hs)
    if cfg.tie and include_head:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return {k: t.contiguous() for k, t in out.items()}


def _layer_to_hf(prefix: str, rest: str, value: torch.Tensor, cfg: ModernConfig, hs: int) -> dict[str, torch.Tensor]:
    module, _, param = rest.rpartition(".")
    if module == "attn.qkv":
        q, k, v = value.split([cfg.n_head * hs, cfg.kv_heads * hs, cfg.kv_heads * hs])
        return {f"{prefix}self_attn.{n}_proj.{param}": t for n, t in zip("qkv", (q, k, v))}
    if module == "mlp.fc":
        gate, up = value.chunk(2) if cfg.mlp == "swiglu" else (value, value.clone())  # one file tensor each
        return {f"{prefix}mlp.gate_proj.{param}": gate, f"{prefix}mlp.up_proj.{param}": up}
    if module == "mlp.proj":
        return {f"{prefix}mlp.down_proj.{param}": value}
    return {f"{prefix}{_NORMS.get(module) or _ATTN[module]}.{param}": value}


def from_hf_config(hf: Mapping[str, Any]) -> ModernConfig:
    """ModernConfig from a Llama or Qwen3 config.json; variants lmtrain does not compute are errors."""
    kind = hf.get("model_type")
    if kind not in MODEL_TYPES:
        raise ConfigError(f"config.json has model_type={kind!r}; this adapter reads {', '.join(MODEL_TYPES)}")
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "relu"):
        raise ConfigError(f"config.json has hidden_act={act!r}; lmtrain's modern block computes silu or relu")
    for key in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if hf.get(key):
            raise ConfigError(f"config.json has {key}=true; lmtrain's modern block has no such variant")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"config.json scales its rotary positions ({rope}); lmtrain computes unscaled ones")
    heads, width = int(hf["num_attention_heads"]), int(hf["hidden_size"])
    kv = int(hf.get("num_key_value_heads") or heads)
    if int(hf.get("head_dim") or width // heads) * heads != width:
        raise ConfigError("config.json has head_dim x num_attention_heads != hidden_size; lmtrain needs them equal")
    return ModernConfig(
        vocab_size=int(hf["vocab_size"]),
        n_layer=int(hf["num_hidden_layers"]),
        n_head=heads,
        n_kv_head=kv if kv != heads else None,
        d_model=width,
        d_ff=int(hf["intermediate_size"]),
        max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        mlp="swiglu" if act == "silu" else "relu2",
        tie=bool(hf.get("tie_word_embeddings", False)),
        qk_norm=kind == "qwen3",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        dropout=float(hf.get("attention_dropout", 0.0)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )


def from_hf_state_dict(state: Mapping[str, torch.Tensor], cfg: ModernConfig) -> dict[str, torch.Tensor]:
    """lmtrain's state dict from a Llama / Qwen3 one: qkv joined, the MLP's gate and up joined (SwiGLU) or checked
    equal (ReLU²)."""
    state = {k.removeprefix("model."): t for k, t in state.items() if not k.endswith("rotary_emb.inv_freq")}
    out: dict[str, torch.Tensor] = {
        "embed.weight": state.pop("embed_tokens.weight"),
        "norm.weight": state.pop("norm.weight"),
    }
    head = state.pop("lm_head.weight", None)
    if not cfg.tie:
        if head is None:
            raise ConfigError("the checkpoint has tie_word_embeddings=false but no lm_head.weight")
        out["head.weight"] = head
    elif head is not None and not torch.equal(head, out["embed.weight"]):
        raise ConfigError("the checkpoint ties its embeddings but its lm_head.weight differs from them")
    for i in range(cfg.n_layer):
        p, q = f"layers.{i}.", f"layers.{i}."
        out[f"{q}attn.qkv.weight"] = torch.cat([state.pop(f"{p}self_attn.{n}_proj.weight") for n in "qkv"])
        gate, up = state.pop(f"{p}mlp.gate_proj.weight"), state.pop(f"{p}mlp.up_proj.weight")
        if cfg.mlp == "relu2" and not torch.equal(gate, up):
            raise ConfigError(f"layer {i}: a relu MLP with gate != up is a gated ReLU, which lmtrain does not build")
        out[f"{q}mlp.fc.weight"] = torch.cat([gate, up]) if cfg.mlp == "swiglu" else gate
        out[f"{q}mlp.proj.weight"] = state.pop(f"{p}mlp.down_proj.weight")
        for ours, theirs in (_NORMS | _ATTN).items():
            key = f"{p}{theirs}.weight"
            if key in state:
                out[f"{q}{ours}.weight"] = state.pop(key)
    if state:
        raise ConfigError(f"the checkpoint has tensors lmtrain's modern block does not: {sorted(state)[0]}")
    return out
