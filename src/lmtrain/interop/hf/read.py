"""Reading a transformers model folder (GPT-2, Llama, Qwen2, Qwen3) as lmtrain's model: its config.json through the
adapter of the architecture it equals, its weights (model.safetensors, its shards, or pytorch_model.bin) checked
tensor by tensor against the shapes the config implies, and the tokenizer beside them.

`lmtrain import` writes what this reads as a checkpoint; `train --init-from`, `eval` and `generate` read a folder
directly (through `interop/open.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lmtrain.data.tokenizers.gpt2 import GPT2_VOCAB_SIZE
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.interop.opened import OpenedModel, checkpoint_config
from lmtrain.interop.provenance import Provenance
from lmtrain.interop.shapes import check_shapes
from lmtrain.model.config import ModelConfig
from lmtrain.model.interchange import HFAdapter
from lmtrain.model.registry import build_model, hf_adapters

SINGLE, INDEX, PICKLE = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
HF_PRESET = "hf-import"
"""The preset name of a checkpoint read from a transformers folder."""


def is_hf_folder(path: Path) -> bool:
    """Whether `path` is a transformers model folder: a config.json naming a model_type (lmtrain's name a model)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config and "model" not in config


def adapter_for(hf_config: dict[str, Any]) -> HFAdapter:
    """The adapter of the architecture that reads a config.json's model_type."""
    kind = hf_config.get("model_type")
    adapters = hf_adapters()
    for adapter in adapters:
        if kind in adapter.MODEL_TYPES:
            return adapter
    known = ", ".join(t for adapter in adapters for t in adapter.MODEL_TYPES)
    raise ConfigError(f"config.json has model_type={kind!r}; lmtrain reads {known}")


def read_hf_config(src: Path) -> dict[str, Any]:
    """A transformers folder's config.json; a missing or unreadable one is a CheckpointError."""
    try:
        config = json.loads((src / "config.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{src} has no config.json; give a transformers model folder") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{src / 'config.json'} is unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{src / 'config.json'} is not a JSON object")
    return config


def weight_files(src: Path) -> list[Path]:
    """The folder's weights files: model.safetensors, the shards its index names (every one present), or
    pytorch_model.bin."""
    if (src / SINGLE).is_file():
        return [src / SINGLE]
    if (src / INDEX).is_file():
        try:
            shards = sorted(set(json.loads((src / INDEX).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{src / INDEX} is unreadable ({type(exc).__name__}: {exc})") from None
        missing = [name for name in shards if not (src / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{src} lacks {missing[0]}, a shard {INDEX} names ({len(missing)} of {len(shards)} missing); "
                f"download every shard"
            )
        return [src / name for name in shards]
    if (src / PICKLE).is_file():
        return [src / PICKLE]
    raise CheckpointError(f"{src} holds no weights ({SINGLE}, {INDEX} or {PICKLE})")


def _load(files: list[Path]) -> dict[str, torch.Tensor]:
    try:
        if files[0].name == PICKLE:
            return torch.load(files[0], map_location="cpu", weights_only=True)
        return {k: v for path in files for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the weights in {files[0].parent} are unreadable ({type(exc).__name__}: {exc})"
        ) from None


def _bare(name: str) -> str:
    """A transformers tensor name without its base model's prefix (checkpoints are saved with and without it)."""
    return name.removeprefix("transformer.").removeprefix("model.")


def expected_hf_shapes(cfg: ModelConfig, adapter: HFAdapter) -> dict[str, tuple[int, ...]]:
    """The transformers tensors `cfg` implies, by name, with their shapes (built on the meta device)."""
    with torch.device("meta"):
        expected = adapter.to_hf_state_dict(build_model(cfg).state_dict(), cfg)
    return {name: tuple(t.shape) for name, t in expected.items()}


def folder_tokenizer(src: Path, cfg: ModelConfig) -> HFTokenizer | None:
    """The folder's tokenizer.json (GPT-2 folders' vocab.json + merges.txt are GPT-2 BPE), checked to fit the
    model's embedding."""
    if not (src / "tokenizer.json").is_file() or (src / "vocab.json").is_file():
        return None
    tokenizer = HFTokenizer(src / "tokenizer.json")
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ConfigError(
            f"{src / 'tokenizer.json'} has {tokenizer.vocab_size:,} ids but the model's embedding has "
            f"{cfg.vocab_size:,} rows; the tokenizer is not this model's"
        )
    return tokenizer


def read_hf_folder(src: Path) -> OpenedModel:
    """A transformers folder (GPT-2, Llama, Qwen2 or Qwen3 of a shape lmtrain builds) read as lmtrain's model."""
    hf_config = read_hf_config(src)
    adapter = adapter_for(hf_config)
    cfg = adapter.from_hf_config(hf_config)
    files = weight_files(src)
    tokenizer = folder_tokenizer(src, cfg)
    state = _load(files)
    expected = expected_hf_shapes(cfg, adapter)
    shapes = {_bare(k): tuple(v.shape) for k, v in state.items()}
    given = {name: shapes[_bare(name)] for name in expected if _bare(name) in shapes}
    check_shapes(expected, given, where=src, config="config.json")
    weights = {k: v.to(torch.float32).contiguous() for k, v in adapter.from_hf_state_dict(state, cfg).items()}
    gpt2 = tokenizer is None and cfg.vocab_size == GPT2_VOCAB_SIZE
    provenance = Provenance(
        format="transformers",
        path=src.resolve(),
        files=tuple(files),
        name=hf_config.get("_name_or_path"),
        released=hf_config,
    )
    return OpenedModel(
        provenance=provenance,
        config=cfg,
        weights=weights,
        checkpoint=checkpoint_config(cfg, tokenizer, preset=HF_PRESET, gpt2=gpt2),
        tokenizer_arg=str(tokenizer.path) if tokenizer is not None else "gpt2" if gpt2 else None,
        carried=tokenizer,
    )
