"""Exporting a model as a transformers folder of the class its architecture equals (GPT-2 -> GPT2LMHeadModel, the
modern block -> LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM).

The folder holds config.json (a released model's keys kept where the model came from one), model.safetensors
(transformers' key names and layouts, padding rows dropped, a tied lm_head left out as transformers saves it),
generation_config.json and the tokenizer as AutoTokenizer loads it (the tokenizer's own `save_hf`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.files import atomic_dir, require_new_folder
from lmtrain.interop.opened import OpenedModel
from lmtrain.model.registry import hf_adapter

KEPT_FROM_SOURCE = ("max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype")
"""Keys of a released config.json an export of a model trained from it keeps as released, whatever lmtrain would
write (the context the release supports, its special tokens, the dtype its weights were published in)."""
SILU_NOTE = (
    "note: this ReLU² model is written as a Llama-family config with hidden_act relu (gate = up, so relu(gate) * up = "
    "relu²); llama.cpp's convert_hf_to_gguf.py ignores hidden_act and would run it as SiLU, a different model. Use "
    "`lmtrain export --format gguf`, which refuses it, or train with --mlp swiglu"
)


def released_keys(ours: dict[str, Any], released: dict[str, Any] | None) -> dict[str, Any]:
    """The config.json to export: ours over the released one a run started from (so that every key transformers
    or other tools read is still there), with `KEPT_FROM_SOURCE` kept as released; ours alone for a model of
    another class."""
    if not released or released.get("model_type") != ours["model_type"]:
        return ours
    merged = {**released, **ours}
    for key in KEPT_FROM_SOURCE:
        if key in released:
            merged[key] = released[key]
    return merged


def token_ends(tokenizer: Tokenizer | None) -> dict[str, int | None]:
    """The beginning and end ids of the tokenizer, where it is known."""
    return {
        "bos_token_id": tokenizer.bos_id if tokenizer is not None else None,
        "eos_token_id": tokenizer.eos_id if tokenizer is not None else None,
    }


def hf_form(opened: OpenedModel, tokenizer: Tokenizer | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json, state dict) of the transformers class the model equals, with the tokenizer's beginning and end
    ids; a model no class computes exactly is a ConfigError."""
    adapter = hf_adapter(opened.config)
    config = released_keys(adapter.to_hf_config(opened.config) | token_ends(tokenizer), opened.provenance.released)
    state = adapter.to_hf_state_dict({k: v.contiguous() for k, v in opened.weights.items()}, opened.config)
    return config, state


def export_hf(opened: OpenedModel, out: Path, tokenizer: Tokenizer | None) -> list[str]:
    """Write the model as a transformers folder `out` (new or empty) with `tokenizer`; the files written."""
    require_new_folder(out)
    hf_config, weights = hf_form(opened, tokenizer)
    ends = token_ends(tokenizer)
    with atomic_dir(out) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(ends, indent=2) + "\n")
        written = ["config.json", "model.safetensors", "generation_config.json"]
        if tokenizer is not None:
            written += tokenizer.save_hf(tmp, opened.config.max_seq_len)
    return written
