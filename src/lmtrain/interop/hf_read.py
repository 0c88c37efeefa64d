"""Reading a transformers model folder (GPT-2, Llama, Qwen2, Qwen3) as lmtrain's model: its config.json through the
adapter of the architecture it equals, its weights (model.safetensors, its shards, or pytorch_model.bin) checked
tensor by tensor against the shapes the config implies, and the tokenizer beside them.

`import-hf` writes what this reads as a checkpoint; `train --init-from` and `eval` read a folder directly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lmtrain import __version__
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gpt2 import GPT2_VOCAB_SIZE, gpt2_fingerprint
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import build_model, hf_adapters, model_to_dict

SINGLE, INDEX, PICKLE = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"


@dataclass(frozen=True)
class HFModel:
    """A transformers folder read as lmtrain's: config, weights (lmtrain's names, fp32), what identifies them."""

    folder: Path
    hf_config: dict[str, Any]
    """The folder's config.json, as released (export keeps its keys)."""
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    files: tuple[Path, ...]
    """The weights files the folder was read from."""
    tokenizer: Tokenizer | None
    """The folder's tokenizer.json, where it has one (GPT-2's vocab.json + merges.txt: None, `tokenizer_fingerprint`
    names GPT-2 BPE)."""

    @cached_property
    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of each weights file, by name (what `sha256sum` prints): read again only where it is recorded."""
        return {path.name: sha256_of(path) for path in self.files}

    @property
    def tokenizer_fingerprint(self) -> dict[str, object] | None:
        """The run tokenizer's fingerprint: the folder's tokenizer.json, GPT-2 BPE for a 50,257-id model without one,
        else None (no tokenizer)."""
        if self.tokenizer is not None:
            return self.tokenizer.fingerprint()
        return gpt2_fingerprint() if self.config.vocab_size == GPT2_VOCAB_SIZE else None


def is_hf_folder(path: Path) -> bool:
    """Whether `path` is a transformers model folder: a config.json naming a model_type (lmtrain's name a model)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config and "model" not in config


def adapter_for(hf_config: dict[str, Any]) -> Any:
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


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def _bare(name: str) -> str:
    """A transformers tensor name without its base model's prefix (checkpoints are saved with and without it)."""
    return name.removeprefix("transformer.").removeprefix("model.")


def check_shapes(state: dict[str, torch.Tensor], cfg: ModelConfig, adapter: Any, src: Path) -> None:
    """Every tensor the config implies is there with its shape (named in transformers' terms when not)."""
    with torch.device("meta"):
        expected = adapter.to_hf_state_dict(build_model(cfg).state_dict(), cfg)
    given = {_bare(k): v for k, v in state.items()}
    for name, want in expected.items():
        got = given.get(_bare(name))
        if got is None:
            raise CheckpointError(f"{src} lacks the tensor {name} that its config.json implies")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{src}: {name} has shape {tuple(got.shape)}, but config.json implies {tuple(want.shape)}; the weights "
                f"and config.json are of different models"
            )


def folder_tokenizer(src: Path, cfg: ModelConfig) -> Tokenizer | None:
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


def read_hf_folder(src: Path) -> HFModel:
    """A transformers folder (GPT-2, Llama, Qwen2 or Qwen3 of a shape lmtrain builds) read as lmtrain's model."""
    hf_config = read_hf_config(src)
    adapter = adapter_for(hf_config)
    cfg = adapter.from_hf_config(hf_config)
    files = weight_files(src)
    tokenizer = folder_tokenizer(src, cfg)
    state = _load(files)
    check_shapes(state, cfg, adapter, src)
    weights = {k: v.to(torch.float32).contiguous() for k, v in adapter.from_hf_state_dict(state, cfg).items()}
    return HFModel(
        folder=src,
        hf_config=hf_config,
        config=cfg,
        weights=weights,
        files=tuple(files),
        tokenizer=tokenizer,
    )


def checkpoint_config_of(found: HFModel) -> dict[str, Any]:
    """The checkpoint config.json of a transformers folder read as lmtrain's: its model and tokenizer (`import-hf`
    adds its `source_record`)."""
    config: dict[str, Any] = {
        "lmtrain_version": __version__,
        "preset": "hf-import",
        "model": model_to_dict(found.config),
    }
    if found.tokenizer_fingerprint is not None:
        config["tokenizer"] = found.tokenizer_fingerprint
    return config


def source_record(found: HFModel) -> dict[str, Any]:
    """Where a model came from: the folder, its name, its weights' SHA-256 and its config.json."""
    return {
        "hf_folder": str(found.folder.resolve()),
        "name": found.hf_config.get("_name_or_path"),
        "weights_sha256": found.weights_sha256,
        "hf_config": found.hf_config,
    }
