"""The preset registry: the same four sizes for every architecture, each its config's defaults with the size's shape
(`dataclasses.replace`), so an architecture added to the registry has its presets without an edit here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lmtrain.errors import ConfigError
from lmtrain.fields import field_types, replace_fields
from lmtrain.model.config import ModelConfig, swiglu_width
from lmtrain.model.registry import DEFAULT_ARCH, get_arch, owners

SIZES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "micro": {"n_layer": 2, "n_head": 2, "d_model": 64, "d_ff": 256, "max_seq_len": 64},
        "tiny": {"n_layer": 4, "n_head": 4, "d_model": 256, "d_ff": 1024, "max_seq_len": 256},
        "small": {"n_layer": 6, "n_head": 8, "d_model": 512, "d_ff": 2048, "max_seq_len": 512},
        "base": {"n_layer": 12, "n_head": 12, "d_model": 768, "d_ff": 3072, "max_seq_len": 1024},
    }
)
"""The shape of each preset; `micro` is a CPU-sized model for tests and smoke runs."""


def presets(arch: str = DEFAULT_ARCH) -> dict[str, ModelConfig]:
    """Every preset of architecture `arch`, by size."""
    config = get_arch(arch).config
    return {size: dataclasses.replace(config(), **shape) for size, shape in SIZES.items()}


PRESET_NOTES: Mapping[str, str] = MappingProxyType(
    {
        "micro": "CPU smoke tests",
        "tiny": "~16M, trains on a CPU",
        "small": "~45M, one GPU",
        "base": "GPT-2 124M's shape",
    }
)

FF_MULTIPLE = 4
"""d_ff follows d_model at this multiple when d_model is overridden and d_ff is not (GPT-2: 4)."""


def get_preset(name: str, arch: str = DEFAULT_ARCH) -> ModelConfig:
    """The preset called `name` of architecture `arch`; an unknown name is a ConfigError listing the known ones."""
    known = presets(arch)
    if name not in known:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(SIZES)}")
    return known[name]


def default_ff(cfg: ModelConfig) -> int:
    """The MLP width that goes with cfg's d_model: 4 x d_model, or SwiGLU's parameter-matched 2/3 of it."""
    width = FF_MULTIPLE * cfg.d_model
    return swiglu_width(width) if cfg.gated_mlp else width


def apply_overrides(cfg: ModelConfig, overrides: Mapping[str, Any]) -> ModelConfig:
    """`cfg` with model fields replaced; when d_model or the MLP kind changes and d_ff is not given, d_ff follows
    (`default_ff`). A key of another architecture is a ConfigError that says which one has it."""
    overrides = dict(overrides)
    known = field_types(type(cfg))
    for key in overrides:
        if key not in known and owners(key):
            raise ConfigError(
                f"--{key.replace('_', '-')} is a setting of --arch {' or '.join(owners(key))}; "
                f"this model is --arch {cfg.arch}"
            )
    if {"d_model", "mlp"} & set(overrides) and "d_ff" not in overrides:
        shaped = replace_fields(cfg, {k: overrides[k] for k in ("d_model", "mlp") if k in overrides}, "model overrides")
        overrides["d_ff"] = default_ff(shaped)
    return replace_fields(cfg, overrides, "model overrides")


def ff_warning(cfg: ModelConfig) -> str | None:
    """A note when d_ff is not the width every preset uses for cfg's d_model and MLP; None when it is."""
    expected = default_ff(cfg)
    if cfg.d_ff == expected:
        return None
    rule = "SwiGLU's parameter-matched 2/3 of 4 x d_model" if cfg.gated_mlp else f"{FF_MULTIPLE} x d_model"
    return (
        f"note: d_ff={cfg.d_ff} is {cfg.d_ff / cfg.d_model:g} x d_model={cfg.d_model}; "
        f"every preset uses {rule} ({expected})"
    )
