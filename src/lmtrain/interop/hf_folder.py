"""Hugging Face folders: export a checkpoint as the transformers class its architecture equals (GPT-2 ->
GPT2LMHeadModel, the modern block -> LlamaForCausalLM or Qwen3ForCausalLM), import one back.

An exported folder holds config.json, model.safetensors (transformers' key names and layouts, padding rows dropped,
a tied lm_head left out as transformers saves it), generation_config.json and the run's tokenizer (`hf_tokenizer.py`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from lmtrain.checkpoint import load_model, write_checkpoint
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.carry import CARRIED
from lmtrain.errors import CheckpointError
from lmtrain.files import atomic_dir, require_new_folder
from lmtrain.interop.hf_read import checkpoint_config_of, read_hf_folder, source_record
from lmtrain.interop.hf_tokenizer import write_hf_tokenizer
from lmtrain.model.registry import hf_adapter

KEPT_FROM_SOURCE = ("max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype")
"""Keys of a released config.json an export of a model trained from it keeps as released, whatever lmtrain would
write (the context the release supports, its special tokens, the dtype its weights were published in)."""


def released_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The released config.json a checkpoint's model came from: an import's (`source`) or that of the model a run
    started from (`init_from`); None for a model trained from scratch."""
    origin = config.get("init_from") or config.get("source") or {}
    return origin.get("hf_config")


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


def export_hf(ckpt: Path, out: Path, tokenizer: Tokenizer | None, weights: str = "auto") -> list[str]:
    """Write checkpoint `ckpt` (its `weights`: auto, ema or raw) as a transformers folder `out` (new or empty) of the
    class its architecture equals, with the run's `tokenizer`; return the files written. A model no class computes
    exactly is a ConfigError."""
    require_new_folder(out)
    model, config = load_model(ckpt, weights=weights)
    adapter = hf_adapter(model.config)
    ends = {  # the run's beginning and end of document, where they are known
        "bos_token_id": tokenizer.bos_id if tokenizer is not None else None,
        "eos_token_id": tokenizer.eot_id if tokenizer is not None else None,
    }
    hf_config = released_keys(adapter.to_hf_config(model.config) | ends, released_config(config))
    weights = adapter.to_hf_state_dict({k: v.contiguous() for k, v in model.state_dict().items()}, model.config)
    with atomic_dir(out) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(ends, indent=2) + "\n")
        written = ["config.json", "model.safetensors", "generation_config.json"]
        if tokenizer is not None:
            written += write_hf_tokenizer(tokenizer, tmp, model.config.max_seq_len)
    return written


def import_hf(src: Path, out: Path) -> Path:
    """Convert a transformers folder (GPT-2, Llama, Qwen2 or Qwen3 of a shape lmtrain builds) into an lmtrain
    checkpoint folder `out` (evaluable, not resumable: `train --init-from` continues training it)."""
    require_new_folder(out)
    found = read_hf_folder(src)
    config = checkpoint_config_of(found) | {"source": source_record(found)}  # the released config.json, kept by export
    files: dict[str, Path] = {}
    if found.tokenizer is not None:  # the folder's own tokenizer, carried by the checkpoint
        files = {f"{CARRIED}/{name}": path for name, path in found.tokenizer.files().items()}
    write_checkpoint(out, found.weights, config, files=files)
    try:
        load_model(out)  # every tensor is there with the shape the config implies
    except CheckpointError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out
