"""The architecture registry: name -> config class, module, sizing and Hugging Face adapter (no torch import).

Adding an architecture is one module under `model/` (its config in `config.py`, its modules meeting
`model/base.CausalLM`), its transformers adapter, and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lmtrain.errors import ConfigError
from lmtrain.fields import field_types, from_mapping, to_jsonable
from lmtrain.model.config import GPTConfig, ModelConfig, ModernConfig
from lmtrain.model.sizing import gpt2_counts, modern_counts


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """One architecture: what builds it, sizes it and moves it to and from transformers."""

    name: str
    config: type[ModelConfig]
    module: str
    """`package.module:Class` of its `CausalLM` (imported when a model is built, so configs stay torch-free)."""
    sizing: Any
    """cfg -> parameter counts by group (see `model/sizing.py`)."""
    hf: str
    """The module of its transformers adapter (`to_hf_config`, `to_hf_state_dict`, `from_hf_config`, ...)."""
    summary: str


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        "gpt2": Architecture(
            name="gpt2",
            config=GPTConfig,
            module="lmtrain.model.gpt:GPT",
            sizing=gpt2_counts,
            hf="lmtrain.model.hf",
            summary="GPT-2 (2019): learned positions, LayerNorm, GELU, biases, tied head",
        ),
        "modern": Architecture(
            name="modern",
            config=ModernConfig,
            module="lmtrain.model.modern:Modern",
            sizing=modern_counts,
            hf="lmtrain.model.hf_llama",
            summary="rotary positions, RMSNorm, QK-norm, ReLU^2 (or SwiGLU), no biases, zero-initialised projections",
        ),
    }
)

DEFAULT_ARCH = "modern"
"""The architecture of a new run (it won the race in bench/results/arch-race-cpu-2core.json)."""
SAVED_DEFAULT_ARCH = "gpt2"
"""The architecture of a config.json without an `arch` key (written before there was a choice)."""


def get_arch(name: str) -> Architecture:
    """The architecture called `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def arch_of(cfg: ModelConfig) -> Architecture:
    """The registry entry of a config."""
    return ARCHITECTURES[cfg.arch]


def model_keys() -> dict[str, str]:
    """Every model key of every architecture -> the first architecture that has it (for flags and TOML keys)."""
    out: dict[str, str] = {}
    for arch in ARCHITECTURES.values():
        for key in field_types(arch.config):
            out.setdefault(key, arch.name)
    return out


def owners(key: str) -> list[str]:
    """The architectures whose config has `key`."""
    return [a.name for a in ARCHITECTURES.values() if key in field_types(a.config)]


def model_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """A model config's JSON form: `arch` and its fields."""
    return {"arch": cfg.arch, **to_jsonable(cfg)}


def model_from_dict(saved: Mapping[str, Any], what: str) -> ModelConfig:
    """A model config from its JSON form; one without `arch` is GPT-2's (written before the registry)."""
    saved = dict(saved)
    arch = get_arch(str(saved.pop("arch", SAVED_DEFAULT_ARCH)))
    return from_mapping(arch.config, saved, what)


def build_model(cfg: ModelConfig, loss_impl: str = "fused") -> Any:
    """A new model of `cfg`'s architecture (a `model/base.CausalLM`) on the current default device."""
    module, name = arch_of(cfg).module.split(":")
    return getattr(importlib.import_module(module), name)(cfg, loss_impl=loss_impl)


def hf_adapter(cfg_or_arch: ModelConfig | str) -> Any:
    """The transformers adapter module of an architecture (by config or name)."""
    arch = get_arch(cfg_or_arch) if isinstance(cfg_or_arch, str) else arch_of(cfg_or_arch)
    return importlib.import_module(arch.hf)


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts of `cfg` by group (the architecture's own sizing)."""
    return arch_of(cfg).sizing(cfg)
