"""The architecture registry: name -> config class, module and an adapter per interchange format (no torch import).

Adding an architecture is its config (a `ModelConfig` subclass with its own fields and `param_counts`; a field it
shares with another architecture becomes one flag for both), one module under `model/` whose model meets
`model/base.CausalLM`, optionally its transformers adapter (`model/hf_*.py`) and its GGUF adapter (`model/gguf_*.py`,
from the transformers form), and one entry in `ARCHITECTURES`.
Nothing else needs an edit: every command takes its flags, `--arch` lists it, its presets are the four sizes of
`presets.SIZES` and its default learning rates are `defaults.SIZE_LR` until it gets an entry of its own in
`defaults.PRESET_LR`. Everything reads the registry through `architectures()` and `get_arch()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from lmtrain.errors import ConfigError
from lmtrain.fields import field_types, from_mapping, to_jsonable
from lmtrain.model.config import GPTConfig, ModelConfig, ModernConfig
from lmtrain.model.interchange import Adapter, GGUFAdapter, HFAdapter

Format = Literal["hf", "gguf"]
FORMAT_NAMES = {"hf": "transformers", "gguf": "GGUF"}


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """One architecture: what builds it, sizes it and moves it to and from transformers."""

    name: str
    config: type[ModelConfig]
    module: str
    """`package.module:Class` of its `CausalLM` (imported when a model is built, so configs stay torch-free)."""
    summary: str
    """One line for `--arch`'s help and `lmtrain presets`."""
    hf: Adapter[HFAdapter] | None = None
    """Its transformers adapter; None: no transformers class computes it, so it is neither exported nor imported."""
    gguf: Adapter[GGUFAdapter] | None = None
    """Its GGUF adapter (from the transformers form); None: no llama.cpp graph computes it."""

    def adapter(self, fmt: Format) -> Adapter[Any] | None:
        """The adapter of format `fmt`."""
        return self.hf if fmt == "hf" else self.gguf


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        "gpt2": Architecture(
            name="gpt2",
            config=GPTConfig,
            module="lmtrain.model.gpt:GPT",
            hf=Adapter("lmtrain.model.hf_gpt2", HFAdapter),
            gguf=Adapter("lmtrain.model.gguf_gpt2", GGUFAdapter),
            summary="GPT-2 (2019): learned positions, LayerNorm, GELU, biases, tied head",
        ),
        "modern": Architecture(
            name="modern",
            config=ModernConfig,
            module="lmtrain.model.modern:Modern",
            hf=Adapter("lmtrain.model.hf_llama", HFAdapter),
            gguf=Adapter("lmtrain.model.gguf_llama", GGUFAdapter),
            summary="rotary positions, RMSNorm, QK-norm, ReLU^2 (or SwiGLU), no biases, zero-initialised projections",
        ),
    }
)

DEFAULT_ARCH = "modern"
"""The architecture of a new run (it won the race in bench/results/arch-race-cpu-2core.json)."""
SAVED_DEFAULT_ARCH = "gpt2"
"""The architecture of a config.json without an `arch` key (written before there was a choice)."""


def architectures() -> Mapping[str, Architecture]:
    """Every registered architecture by name (read at each call, so nothing holds a stale copy of the registry)."""
    return ARCHITECTURES


def get_arch(name: str) -> Architecture:
    """The architecture called `name`; an unknown name is a ConfigError listing the known ones."""
    known = architectures()
    if name not in known:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(known)}")
    return known[name]


def arch_of(cfg: ModelConfig) -> Architecture:
    """The registry entry of a config."""
    return get_arch(cfg.arch)


def model_keys() -> dict[str, list[str]]:
    """Every model key of every architecture -> the architectures whose config has it, in registry order (one flag
    and one TOML key each, however many architectures share it)."""
    out: dict[str, list[str]] = {}
    for arch in architectures().values():
        for key in field_types(arch.config):
            out.setdefault(key, []).append(arch.name)
    return out


def owners(key: str) -> list[str]:
    """The architectures whose config has `key`."""
    return model_keys().get(key, [])


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


def hf_adapter(cfg_or_arch: ModelConfig | str) -> HFAdapter:
    """The transformers adapter of an architecture (by config or name); a ConfigError for one without."""
    return _adapter(cfg_or_arch, "hf")


def gguf_adapter(cfg_or_arch: ModelConfig | str) -> GGUFAdapter:
    """The GGUF adapter of an architecture (by config or name); a ConfigError for one without."""
    return _adapter(cfg_or_arch, "gguf")


def _adapter(cfg_or_arch: ModelConfig | str, fmt: Format) -> Any:
    arch = get_arch(cfg_or_arch) if isinstance(cfg_or_arch, str) else arch_of(cfg_or_arch)
    adapter = arch.adapter(fmt)
    if adapter is None:
        raise ConfigError(
            f"--arch {arch.name} has no {FORMAT_NAMES[fmt]} equivalent, so it cannot be exported or imported as one"
        )
    return adapter.load()


def hf_adapters() -> list[HFAdapter]:
    """The transformers adapters of every architecture that has one, in registry order."""
    return [a.hf.load() for a in architectures().values() if a.hf is not None]


def gguf_adapters() -> list[tuple[Architecture, GGUFAdapter]]:
    """(architecture, GGUF adapter) of every architecture that has one, in registry order."""
    return [(a, a.gguf.load()) for a in architectures().values() if a.gguf is not None]
