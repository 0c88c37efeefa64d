"""What an architecture's adapter to each interchange format provides (one typed protocol per format), and the
registry's reference to an adapter module, checked against its protocol when it is loaded.

transformers (`hf_*.py`): lmtrain's config and state dict <-> the config.json and state dict of the transformers class
the architecture equals. GGUF (`gguf_*.py`): the transformers form <-> GGUF's metadata and tensors, the pivot
llama.cpp's own converter uses, so that lmtrain's parameter names stay in the transformers adapters. Nothing here
imports torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

if TYPE_CHECKING:
    import torch

    from lmtrain.model.config import ModelConfig


class HFAdapter(Protocol):
    """An architecture <-> the transformers classes it equals."""

    MODEL_TYPES: tuple[str, ...]
    """The config.json model types it reads."""

    def to_hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        """config.json of the class `cfg` equals; a ConfigError for what no class computes."""
        ...

    def to_hf_state_dict(
        self, state: Mapping[str, torch.Tensor], cfg: ModelConfig, include_head: bool = False
    ) -> dict[str, torch.Tensor]:
        """transformers' state dict from lmtrain's."""
        ...

    def from_hf_config(self, hf: Mapping[str, Any]) -> ModelConfig:
        """lmtrain's config from a config.json; a ConfigError naming the key lmtrain does not compute."""
        ...

    def from_hf_state_dict(self, state: Mapping[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
        """lmtrain's state dict from transformers'."""
        ...


@dataclass(frozen=True)
class GGUFModel:
    """A model in GGUF's terms: its architecture name, the `{arch}.*` metadata and the tensors (GGUF names, PyTorch
    layout: rows first), fp32."""

    arch: str
    fields: dict[str, Any]
    tensors: dict[str, torch.Tensor]


class GGUFAdapter(Protocol):
    """An architecture's transformers form <-> the llama.cpp architectures that compute it exactly."""

    ARCHITECTURES: tuple[str, ...]
    """The GGUF `general.architecture` names it reads."""

    def to_gguf(self, hf_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> GGUFModel:
        """The GGUF form of a transformers config.json and state dict; a ConfigError naming what no llama.cpp graph
        computes."""
        ...

    def from_gguf(self, model: GGUFModel) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config.json, state dict) of the transformers form of a GGUF model; a ConfigError naming a key or tensor
        lmtrain does not compute."""
        ...


A = TypeVar("A")


@dataclass(frozen=True)
class Adapter(Generic[A]):
    """An adapter module, imported when it is used (so that configs stay torch-free) and checked to provide every
    member of its format's protocol."""

    module: str
    protocol: type[A]

    def load(self) -> A:
        """The module, as its protocol."""
        found = importlib.import_module(self.module)
        members = [m for m in vars(self.protocol) if not m.startswith("_")]
        members += list(getattr(self.protocol, "__annotations__", {}))
        missing = sorted({m for m in members if not hasattr(found, m)})
        if missing:
            raise TypeError(f"{self.module} lacks {', '.join(missing)} of {self.protocol.__name__}")
        return cast(A, found)
