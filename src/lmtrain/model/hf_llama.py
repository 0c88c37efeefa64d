"""The modern block <-> transformers' LlamaForCausalLM (no QK-norm, no biases), Qwen2ForCausalLM (q/k/v biases) and
Qwen3ForCausalLM (QK-norm): state dicts and config.json. Nothing here imports transformers.

The three classes compute rotary positions with rotate_half (unscaled, linear or Llama-3 scaled frequencies), RMSNorm
in fp32, SwiGLU as down(act(gate x) * up x) and heads of any width (head_dim), as `model/modern.py` does. A ReLU² MLP
is exported in its exact gated form: gate and up hold the same matrix and hidden_act is relu, since
relu(a) * a = relu(a)². Llama and Qwen3 put a bias on the output projection too when attention_bias is set: exported,
it is zero; imported, it must be. What no class computes exactly (soft-capped logits, a GELU MLP) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.config import ModernConfig
from lmtrain.model.hf_common import unpadded

MODEL_TYPES = ("llama", "qwen2", "qwen3")
"""The transformers model types this adapter reads."""
CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
ROPE_TYPES = ("default", "linear", "llama3")
"""The rope_scaling kinds lmtrain computes (`model/rope.py`)."""

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


def model_type(cfg: ModernConfig) -> str:
    """The transformers model type `cfg` equals: qwen3 with QK-norm, qwen2 with q/k/v biases, else llama."""
    return "qwen3" if cfg.qk_norm else "qwen2" if cfg.qkv_bias else "llama"


def _rope(cfg: ModernConfig) -> dict[str, Any]:
    """rope_parameters (transformers 5) / rope_scaling (4.x) of `cfg`."""
    rope: dict[str, Any] = {"rope_type": "default" if cfg.rope_scaling == "none" else cfg.rope_scaling}
    if cfg.rope_scaling != "none":
        rope["factor"] = cfg.rope_factor
    if cfg.rope_scaling == "llama3":
        rope |= {
            "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_max_seq_len,
        }
    return rope


def to_hf_config(cfg: ModernConfig) -> dict[str, Any]:
    """config.json for the transformers class `cfg` equals (`model_type`)."""
    _exportable(cfg)
    kind = model_type(cfg)
    rope = _rope(cfg)
    out: dict[str, Any] = {
        "architectures": [CLASSES[kind]],
        "model_type": kind,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_size,
        "hidden_act": "silu" if cfg.mlp == "swiglu" else "relu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {**rope, "rope_theta": cfg.rope_theta},
        "rope_scaling": None if cfg.rope_scaling == "none" else rope,
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie,
        "initializer_range": cfg.init_std,
        "torch_dtype": "float32",
    }
    if kind != "qwen2":  # Qwen2's q/k/v biases are not a setting
        out["attention_bias"] = cfg.qkv_bias
    if kind == "llama":
        out["mlp_bias"] = False
    else:
        out |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.n_layer}
    return out


def to_hf_state_dict(
    state: Mapping[str, torch.Tensor], cfg: ModernConfig, include_head: bool = False
) -> dict[str, torch.Tensor]:
    """transformers' state dict from lmtrain's: padding rows dropped, q/k/v split, the MLP in its gated form, a zero
    output-projection bias where the class has one; `include_head` adds a tied lm_head.weight (an untied one is always
    there)."""
    _exportable(cfg)
    hs, v = cfg.head_size, cfg.vocab_size
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
            if rest == "attn.proj.weight" and cfg.qkv_bias and model_type(cfg) != "qwen2":
                out[f"model.layers.{i}.self_attn.o_proj.bias"] = value.new_zeros(cfg.d_model)
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


def _read_rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    """ModernConfig's rope fields, read as transformers 5 reads them: rope_scaling where it is set (over
    rope_parameters), its rope_theta else the top-level one; a kind lmtrain does not compute is an error."""
    rope = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    if not isinstance(rope, Mapping) or any(isinstance(v, Mapping) for v in rope.values()):
        raise ConfigError("config.json has rotary parameters per layer type; lmtrain's modern block has one kind")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ConfigError(
            f"config.json has rope_scaling rope_type={kind!r}; lmtrain computes {', '.join(ROPE_TYPES)} rotary "
            f"frequencies"
        )
    if float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ConfigError("config.json has partial_rotary_factor != 1; lmtrain rotates every dimension of a head")
    fields: dict[str, Any] = {"rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))}
    if kind == "default":
        return fields
    fields |= {"rope_scaling": kind, "rope_factor": float(rope["factor"])}
    if kind == "llama3":
        fields |= {
            "rope_low_freq_factor": float(rope["low_freq_factor"]),
            "rope_high_freq_factor": float(rope["high_freq_factor"]),
            "rope_original_max_seq_len": int(rope["original_max_position_embeddings"]),
        }
    return fields


def from_hf_config(hf: Mapping[str, Any]) -> ModernConfig:
    """ModernConfig from a Llama, Qwen2 or Qwen3 config.json; variants lmtrain does not compute are errors naming
    the key."""
    kind = hf.get("model_type")
    if kind not in MODEL_TYPES:
        raise ConfigError(f"config.json has model_type={kind!r}; this adapter reads {', '.join(MODEL_TYPES)}")
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "relu"):
        raise ConfigError(f"config.json has hidden_act={act!r}; lmtrain's modern block computes silu or relu")
    for key in ("mlp_bias", "use_sliding_window"):
        if hf.get(key):
            raise ConfigError(f"config.json has {key}=true; lmtrain's modern block has no such variant")
    heads, width = int(hf["num_attention_heads"]), int(hf["hidden_size"])
    kv = int(hf.get("num_key_value_heads") or heads)
    head_dim = int(hf.get("head_dim") or width // heads)
    return ModernConfig(
        vocab_size=int(hf["vocab_size"]),
        n_layer=int(hf["num_hidden_layers"]),
        n_head=heads,
        n_kv_head=kv if kv != heads else None,
        d_model=width,
        d_ff=int(hf["intermediate_size"]),
        head_dim=None if head_dim * heads == width else head_dim,
        max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        mlp="swiglu" if act == "silu" else "relu2",
        tie=bool(hf.get("tie_word_embeddings", False)),
        qk_norm=kind == "qwen3",
        qkv_bias=kind == "qwen2" or bool(hf.get("attention_bias", False)),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        dropout=float(hf.get("attention_dropout", 0.0)),
        init_std=float(hf.get("initializer_range", 0.02)),
        **_read_rope(hf),
    )


def from_hf_state_dict(state: Mapping[str, torch.Tensor], cfg: ModernConfig) -> dict[str, torch.Tensor]:
    """lmtrain's state dict from a Llama / Qwen2 / Qwen3 one: q/k/v joined (weights and biases), the MLP's gate and
    up joined (SwiGLU) or checked equal (ReLU²), an output-projection bias checked zero."""
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
        p = f"layers.{i}."
        out[f"{p}attn.qkv.weight"] = torch.cat([state.pop(f"{p}self_attn.{n}_proj.weight") for n in "qkv"])
        if cfg.qkv_bias:
            out[f"{p}attn.qkv.bias"] = torch.cat([state.pop(f"{p}self_attn.{n}_proj.bias") for n in "qkv"])
        o_bias = state.pop(f"{p}self_attn.o_proj.bias", None)
        if o_bias is not None and bool(o_bias.any()):
            raise ConfigError(
                f"model.layers.{i}.self_attn.o_proj.bias is not zero; lmtrain's modern block has no bias on the "
                f"attention's output projection"
            )
        gate, up = state.pop(f"{p}mlp.gate_proj.weight"), state.pop(f"{p}mlp.up_proj.weight")
        if cfg.mlp == "relu2" and not torch.equal(gate, up):
            raise ConfigError(f"layer {i}: a relu MLP with gate != up is a gated ReLU, which lmtrain does not build")
        out[f"{p}mlp.fc.weight"] = torch.cat([gate, up]) if cfg.mlp == "swiglu" else gate
        out[f"{p}mlp.proj.weight"] = state.pop(f"{p}mlp.down_proj.weight")
        for ours, theirs in (_NORMS | _ATTN).items():
            key = f"{p}{theirs}.weight"
            if key in state:
                out[f"{p}{ours}.weight"] = state.pop(key)
    if state:
        raise ConfigError(f"the checkpoint has tensors lmtrain's modern block does not: model.{sorted(state)[0]}")
    return out
