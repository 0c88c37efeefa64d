"""The modern block's transformers form (Llama, Qwen2, Qwen3: `hf_llama.py`) <-> GGUF's `llama`, `qwen2` and `qwen3`
architectures, as llama.cpp's converter writes them and its graphs compute them.

The three graphs compute pre-RMSNorm blocks with a gated SiLU MLP, grouped-query attention with heads of any width
(`key_length`), Qwen3's QK-norm, and q/k/v biases where the file has them. `qwen2` and `qwen3` rotate halves as
transformers does; `llama` rotates adjacent pairs, so its query and key rows are permuted (the converter's `permute`)
and permuted back on import. Llama-3's scaled frequencies are the `rope_freqs` tensor (the factor each frequency is
divided by), which only the `llama` graph reads; linear scaling is `rope.scaling.*`. A ReLU² MLP (hidden_act relu) is
refused: every one of these graphs gates with SiLU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.interchange import GGUFModel
from lmtrain.model.rope import inv_frequencies

ARCHITECTURES = ("llama", "qwen2", "qwen3")
"""The GGUF architectures this adapter reads and writes: each is the transformers model type of the same name."""
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
"""A block's tensors: transformers' name after `model.layers.{i}.` -> GGUF's after `blk.{i}.`."""
_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
ROPE_FREQS = "rope_freqs.weight"
_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of each head from transformers' halves layout to GGML's adjacent pairs (llama.cpp's converter)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of `permute`."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _head_dim(hf: Mapping[str, Any]) -> int:
    return int(hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])


def _rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    """rope_scaling where set, else rope_parameters (transformers' order)."""
    return dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})


def _computable(hf: Mapping[str, Any], kind: str) -> None:
    if hf.get("hidden_act", "silu") != "silu":
        raise ConfigError(
            f"--mlp relu2: llama.cpp's {kind} graph (like every graph it has for this block) computes a gated SiLU "
            f"MLP, so a ReLU² model would run as a different model there; train with --mlp swiglu to export to GGUF"
        )
    scaling = _rope(hf).get("rope_type", "default")
    if scaling == "llama3" and kind != "llama":
        raise ConfigError(
            f"--rope-scaling llama3 with {'QK-norm' if kind == 'qwen3' else 'q/k/v biases'}: llama.cpp's {kind} "
            f"graph does not read Llama-3's scaled frequencies (only its llama graph does)"
        )


def to_gguf(hf_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> GGUFModel:
    """The GGUF model of a Llama, Qwen2 or Qwen3 config.json and state dict (tensors in GGUF names, fp32)."""
    kind = str(hf_config["model_type"])
    _computable(hf_config, kind)
    heads, kv = int(hf_config["num_attention_heads"]), int(hf_config["num_key_value_heads"])
    hs = _head_dim(hf_config)
    rope = _rope(hf_config)
    fields: dict[str, Any] = {
        "context_length": int(hf_config["max_position_embeddings"]),
        "embedding_length": int(hf_config["hidden_size"]),
        "block_count": int(hf_config["num_hidden_layers"]),
        "feed_forward_length": int(hf_config["intermediate_size"]),
        "attention.head_count": heads,
        "attention.head_count_kv": kv,
        "attention.key_length": hs,
        "attention.value_length": hs,
        "attention.layer_norm_rms_epsilon": float(hf_config["rms_norm_eps"]),
        "rope.dimension_count": hs,
        "rope.freq_base": float(rope.get("rope_theta", hf_config.get("rope_theta", 10000.0))),
        "vocab_size": int(hf_config["vocab_size"]),
    }
    if rope.get("rope_type") == "linear":
        fields |= {"rope.scaling.type": "linear", "rope.scaling.factor": float(rope["factor"])}
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name in _GLOBAL:
            tensors[_GLOBAL[name]] = value
        elif name == "lm_head.weight":
            if not hf_config.get("tie_word_embeddings", False):
                tensors["output.weight"] = value
        elif name.endswith("self_attn.o_proj.bias"):
            if bool(value.any()):
                raise ConfigError(f"{name} is not zero; llama.cpp's {kind} graph has no output-projection bias")
        else:
            _, _, i, rest = name.split(".", 3)  # model.layers.{i}.{rest}
            if kind == "llama" and rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
                value = permute(value, heads if "q_proj" in rest else kv)
            tensors[f"blk.{i}.{_LAYER[rest]}"] = value
    if rope.get("rope_type") == "llama3":
        tensors[ROPE_FREQS] = rope_freq_factors(hf_config)
    return GGUFModel(arch=kind, fields=fields, tensors=tensors)


def rope_freq_factors(hf_config: Mapping[str, Any]) -> torch.Tensor:
    """llama.cpp's `rope_freqs` (hs/2,): what each unscaled frequency is divided by, from lmtrain's own frequencies
    (so that both compute the same angles)."""
    from lmtrain.model.hf_llama import from_hf_config

    cfg = from_hf_config(hf_config)
    return (inv_frequencies(dataclasses.replace(cfg, rope_scaling="none")) / inv_frequencies(cfg)).float()


def from_gguf(model: GGUFModel) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json, state dict) of a `llama`, `qwen2` or `qwen3` GGUF model."""
    kind, f = model.arch, model.fields
    width, heads = int(f["embedding_length"]), int(f["attention.head_count"])
    kv = int(f.get("attention.head_count_kv", heads))
    hs = int(f.get("attention.key_length", width // heads))
    if int(f.get("attention.value_length", hs)) != hs or int(f.get("rope.dimension_count", hs)) != hs:
        raise ConfigError(
            f"the GGUF file's key, value and rotary widths differ ({hs}, {f.get('attention.value_length')}, "
            f"{f.get('rope.dimension_count')}); lmtrain rotates whole heads of one width"
        )
    tensors = dict(model.tensors)
    layers = int(f["block_count"])
    ff = int(f.get("feed_forward_length") or tensors["blk.0.ffn_gate.weight"].shape[0])
    hf: dict[str, Any] = {
        "architectures": [_CLASSES[kind]],
        "model_type": kind,
        "vocab_size": int(tensors["token_embd.weight"].shape[0]),
        "hidden_size": width,
        "intermediate_size": ff,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hs,
        "hidden_act": "silu",
        "max_position_embeddings": int(f["context_length"]),
        "rms_norm_eps": float(f["attention.layer_norm_rms_epsilon"]),
        "rope_theta": float(f.get("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
    }
    hf["rope_scaling"] = _read_scaling(f, tensors.pop(ROPE_FREQS, None), hf)
    state: dict[str, torch.Tensor] = {hf_name: tensors.pop(g) for hf_name, g in _GLOBAL.items()}
    if "output.weight" in tensors:
        state["lm_head.weight"] = tensors.pop("output.weight")
    by_gguf = {g: t for t, g in _LAYER.items()}
    for name in sorted(tensors):
        parts = name.split(".", 2)
        if parts[0] != "blk" or parts[2] not in by_gguf:
            raise ConfigError(f"the GGUF file has a tensor {name} that llama.cpp's {kind} graph lmtrain builds has not")
        rest, value = by_gguf[parts[2]], tensors[name]
        if kind == "llama" and rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
            value = unpermute(value, heads if "q_proj" in rest else kv)
        state[f"model.layers.{parts[1]}.{rest}"] = value
    return hf, state


def _read_scaling(
    fields: Mapping[str, Any], factors: torch.Tensor | None, hf: Mapping[str, Any]
) -> dict[str, Any] | None:
    """rope_scaling from `rope.scaling.*` (linear) or a `rope_freqs` tensor (Llama-3's, its parameters fitted to the
    factors and checked to reproduce them); what lmtrain does not compute is an error."""
    kind = fields.get("rope.scaling.type", "none")
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(fields["rope.scaling.factor"])}
    if kind not in ("none", ""):
        raise ConfigError(f"the GGUF file has rope.scaling.type={kind!r}; lmtrain computes none, linear or llama3")
    if factors is None or bool((factors == 1).all()):
        return None
    scaling = fit_llama3(factors.double(), theta=float(hf["rope_theta"]), head_dim=int(hf["head_dim"]))
    fitted = rope_freq_factors({**hf, "rope_scaling": scaling})
    if not torch.allclose(fitted.double(), factors.double(), rtol=1e-4, atol=0):
        raise ConfigError(
            "the GGUF file's rope_freqs are not Llama-3's scaling (no factor, band and context reproduce them); "
            "lmtrain computes none, linear or llama3 rotary frequencies"
        )
    return scaling


def fit_llama3(factors: torch.Tensor, *, theta: float, head_dim: int) -> dict[str, Any]:
    """Llama-3 scaling parameters that give `factors` (hs/2,): the largest factor, and a band whose slope and offset
    match the factors strictly between 1 and it (the factors fix only `original / (high - low)` and
    `low / (high - low)`, so low is taken as 1, Llama-3's own); a ConfigError where no band fits."""
    factor = float(factors.max())
    wavelen = 2 * math.pi * theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    band = (factors > 1 + 1e-6) & (factors < factor * (1 - 1e-6))
    if int(band.sum()) >= 2:
        s = (1 / factors[band] - 1 / factor) / (1 - 1 / factor)  # = (original / wavelen - low) / (high - low)
        x = 1 / wavelen[band]
        slope = float(((x - x.mean()) * (s - s.mean())).sum() / ((x - x.mean()) ** 2).sum())
        offset = float(slope * x.mean() - s.mean())
        if offset <= 0:
            raise ConfigError("the GGUF file's rope_freqs do not follow Llama-3's scaling (its band has no low edge)")
        low, high, original = 1.0, (1 + offset) / offset, slope / offset
    elif int(band.sum()) == 0 and bool((factors >= factor * (1 - 1e-6)).any()):
        kept, scaled = wavelen[factors <= 1 + 1e-6], wavelen[factors >= factor * (1 - 1e-6)]
        original = float(scaled.min()) * (1 - 1e-6)
        top = float(kept.max()) if len(kept) else original / 2
        low, high = 1.0, original / ((top + original) / 2)
    else:
        raise ConfigError(
            "the GGUF file's rope_freqs have one frequency between kept and scaled; lmtrain cannot fit "
            "Llama-3's band to it"
        )
    return {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": int(round(original)),
    }
