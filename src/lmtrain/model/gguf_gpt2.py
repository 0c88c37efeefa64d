"""GPT-2's transformers form (`hf_gpt2.py`) <-> GGUF's `gpt2` architecture, as llama.cpp's converter writes it and
its graph computes it: learned positions, pre-LayerNorm blocks with biases, one q/k/v matrix, a tanh-GELU MLP, a tied
head. transformers keeps the four block matrices as Conv1D (in, out); GGUF keeps them as every other matrix, (out, in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.errors import ConfigError
from lmtrain.model.interchange import GGUFModel

ARCHITECTURES = ("gpt2",)
"""The GGUF architectures this adapter reads and writes."""
_LAYER = {
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}
"""A block's modules: transformers' name after `transformer.h.{i}.` -> GGUF's after `blk.{i}.`."""
_GLOBAL = {
    "transformer.wte.weight": "token_embd.weight",
    "transformer.wpe.weight": "position_embd.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "transformer.ln_f.bias": "output_norm.bias",
}
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def to_gguf(hf_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> GGUFModel:
    """The GGUF model of a GPT-2 config.json and state dict (tensors in GGUF names, fp32)."""
    fields = {
        "context_length": int(hf_config["n_positions"]),
        "embedding_length": int(hf_config["n_embd"]),
        "block_count": int(hf_config["n_layer"]),
        "feed_forward_length": int(hf_config.get("n_inner") or 4 * int(hf_config["n_embd"])),
        "attention.head_count": int(hf_config["n_head"]),
        "attention.layer_norm_epsilon": float(hf_config["layer_norm_epsilon"]),
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name in _GLOBAL:
            tensors[_GLOBAL[name]] = value
        elif name != "lm_head.weight":  # tied: the token embedding
            _, _, i, rest = name.split(".", 3)  # transformer.h.{i}.{module}.{param}
            module, _, param = rest.rpartition(".")
            if module in _CONV1D and param == "weight":
                value = value.t().contiguous()
            tensors[f"blk.{i}.{_LAYER[module]}.{param}"] = value
    return GGUFModel(arch="gpt2", fields=fields, tensors=tensors)


def from_gguf(model: GGUFModel) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json, state dict) of a `gpt2` GGUF model."""
    f, tensors = model.fields, dict(model.tensors)
    if "output.weight" in tensors:
        if not torch.equal(tensors.pop("output.weight"), tensors["token_embd.weight"]):
            raise ConfigError(
                "the GGUF file's output.weight differs from its token embedding; lmtrain's GPT-2 ties them"
            )
    width = int(f["embedding_length"])
    hf: dict[str, Any] = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": int(tensors["token_embd.weight"].shape[0]),
        "n_positions": int(tensors["position_embd.weight"].shape[0]),
        "n_ctx": int(f.get("context_length", tensors["position_embd.weight"].shape[0])),
        "n_embd": width,
        "n_layer": int(f["block_count"]),
        "n_head": int(f["attention.head_count"]),
        "n_inner": int(f.get("feed_forward_length", 4 * width)),
        "activation_function": "gelu_new",
        "layer_norm_epsilon": float(f["attention.layer_norm_epsilon"]),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": True,
    }
    state = {hf_name: tensors.pop(g) for hf_name, g in _GLOBAL.items()}
    by_gguf = {g: t for t, g in _LAYER.items()}
    for name in sorted(tensors):
        parts = name.split(".")
        module = by_gguf.get(parts[2]) if len(parts) == 4 and parts[0] == "blk" else None
        if module is None:
            raise ConfigError(f"the GGUF file has a tensor {name} that llama.cpp's gpt2 graph lmtrain builds has not")
        value = tensors[name]
        if module in _CONV1D and parts[3] == "weight":
            value = value.t().contiguous()
        state[f"transformer.h.{parts[1]}.{module}.{parts[3]}"] = value
    return hf, state
