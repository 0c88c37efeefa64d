"""The preset registry: named GPTConfigs, each derived from GPT-2 124M with `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lmtrain.errors import ConfigError
from lmtrain.fields import replace_fields
from lmtrain.model.config import GPTConfig

_GPT2_124M = GPTConfig(n_layer=12, n_head=12, d_model=768, d_ff=3072, max_seq_len=1024)

PRESETS: Mapping[str, GPTConfig] = MappingProxyType(
    {
        "micro": dataclasses.replace(_GPT2_124M, n_layer=2, n_head=2, d_model=64, d_ff=256, max_seq_len=64),
        "tiny": dataclasses.replace(_GPT2_124M, n_layer=4, n_head=4, d_model=256, d_ff=1024, max_seq_len=256),
        "small": dataclasses.replace(_GPT2_124M, n_layer=6, n_head=8, d_model=512, d_ff=2048, max_seq_len=512),
        "base": _GPT2_124M,
    }
)
"""Model presets; `micro` is a CPU-sized model for tests and smoke runs."""

PRESET_NOTES: Mapping[str, str] = MappingProxyType(
    {
        "micro": "CPU smoke tests",
        "tiny": "~16M, trains on a CPU",
        "small": "~45M, one GPU",
        "base": "GPT-2 124M",
    }
)

FF_MULTIPLE = 4
"""d_ff follows d_model at this multiple when d_model is overridden and d_ff is not (GPT-2: 4)."""


def get_preset(name: str) -> GPTConfig:
    """The preset called `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def apply_overrides(cfg: GPTConfig, overrides: Mapping[str, Any]) -> GPTConfig:
    """`cfg` with model fields replaced; when d_model changes and d_ff is not given, d_ff = 4 x d_model."""
    overrides = dict(overrides)
    if "d_model" in overrides and "d_ff" not in overrides:
        new = replace_fields(cfg, {"d_model": overrides["d_model"]}, "model overrides")
        overrides["d_ff"] = FF_MULTIPLE * new.d_model
    return replace_fields(cfg, overrides, "model overrides")


def ff_warning(cfg: GPTConfig) -> str | None:
    """A note when d_ff is not 4 x d_model, the GPT-2 ratio every preset uses; None when it is."""
    if cfg.d_ff == FF_MULTIPLE * cfg.d_model:
        return None
    return (
        f"note: d_ff={cfg.d_ff} is {cfg.d_ff / cfg.d_model:g} x d_model={cfg.d_model}; "
        f"GPT-2 and every preset use {FF_MULTIPLE} x ({FF_MULTIPLE * cfg.d_model})"
    )
