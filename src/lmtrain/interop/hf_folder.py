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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmtrain import __version__
from lmtrain.checkpoint import load_model, write_checkpoint
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.carry import CARRIED
from lmtrain.data.tokenizers.gpt2 import GPT2_VOCAB_SIZE, gpt2_fingerprint
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.files import atomic_dir, require_new_folder
from lmtrain.interop.hf_tokenizer import write_hf_tokenizer
from lmtrain.model.registry import hf_adapter, hf_adapters, model_to_dict


def export_hf(ckpt: Path, out: Path, tokenizer: Tokenizer | None, weights: str = "auto") -> list[str]:
    """Write checkpoint `ckpt` (its `weights`: auto, ema or raw) as a transformers folder `out` (new or empty) of the
    class its architecture equals, with the run's `tokenizer`; return the files written. A model no class computes
    exactly is a ConfigError."""
    require_new_folder(out)
    model, _config = load_model(ckpt, weights=weights)
    adapter = hf_adapter(model.config)
    eot = tokenizer.eot_id if tokenizer is not None else None  # the run's end of document, where it is known
    ends = {"bos_token_id": eot, "eos_token_id": eot}
    hf_config = adapter.to_hf_config(model.config) | ends
    weights = adapter.to_hf_state_dict({k: v.contiguous() for k, v in model.state_dict().items()}, model.config)
    with atomic_dir(out) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(ends, indent=2) + "\n")
        written = ["config.json", "model.safetensors", "generation_config.json"]
        if tokenizer is not None:
            written += write_hf_tokenizer(tokenizer, tmp, model.config.max_seq_len)
    return written


def _hf_weights(src: Path) -> dict[str, torch.Tensor]:
    """Tensors of a transformers folder: model.safetensors, its shards, or pytorch_model.bin."""
    try:
        if (src / "model.safetensors").is_file():
            return load_file(str(src / "model.safetensors"))
        index = src / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(str(src / shard)).items()}
        if (src / "pytorch_model.bin").is_file():
            return torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"the weights in {src} are unreadable ({type(exc).__name__}: {exc})") from None
    raise CheckpointError(f"{src} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _adapter_for(hf_config: dict[str, Any]) -> Any:
    """The adapter of the architecture that reads a config.json's model_type."""
    kind = hf_config.get("model_type")
    adapters = hf_adapters()
    for adapter in adapters:
        if kind in adapter.MODEL_TYPES:
            return adapter
    known = ", ".join(t for adapter in adapters for t in adapter.MODEL_TYPES)
    raise ConfigError(f"config.json has model_type={kind!r}; lmtrain imports {known}")


def import_hf(src: Path, out: Path) -> Path:
    """Convert a transformers folder (GPT-2, Llama or Qwen3 of a shape lmtrain builds) into an lmtrain checkpoint
    folder `out` (evaluable, not resumable)."""
    require_new_folder(out)
    try:
        hf_config = json.loads((src / "config.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{src} has no config.json; give a transformers model folder") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{src / 'config.json'} is unreadable ({exc})") from None
    adapter = _adapter_for(hf_config)
    cfg = adapter.from_hf_config(hf_config)
    weights = adapter.from_hf_state_dict(_hf_weights(src), cfg)
    config: dict[str, Any] = {
        "lmtrain_version": __version__,
        "preset": "hf-import",
        "model": model_to_dict(cfg),
        "source": {"hf_folder": str(src.resolve()), "name": hf_config.get("_name_or_path")},
    }
    files: dict[str, Path] = {}
    if (src / "tokenizer.json").is_file() and not (src / "vocab.json").is_file():
        tokenizer = HFTokenizer(src / "tokenizer.json")  # the folder's own tokenizer, carried by the checkpoint
        config["tokenizer"] = tokenizer.fingerprint()
        files = {f"{CARRIED}/{name}": path for name, path in tokenizer.files().items()}
    elif cfg.vocab_size == GPT2_VOCAB_SIZE:
        config["tokenizer"] = gpt2_fingerprint()
    weights = {k: v.to(torch.float32).contiguous() for k, v in weights.items()}
    write_checkpoint(out, weights, config, files=files)
    try:
        load_model(out)  # every tensor is there with the shape the config implies
    except CheckpointError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out
