"""`lmtrain train --init-from PATH`: a new run that starts from a trained model's weights.

PATH is anything `interop/open.py` opens: a transformers folder (GPT-2, Llama, Qwen2, Qwen3), a GGUF file (llama,
qwen2, qwen3, gpt2) or an lmtrain run (its best checkpoint) or checkpoint. The model config and the tokenizer come from PATH; a --preset, a model flag or a
--tokenizer that disagrees with it is an error, except what a run may change about a trained model (`OVERRIDABLE`).
The optimizer and the schedule start fresh, with the defaults measured for continuing a trained model
(`defaults.FINETUNE`). The run records where it started (`Start.record`) in config.json, every checkpoint and the
report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmtrain.config import DataConfig, RunConfig, normalise_keys, section_of
from lmtrain.defaults import FINETUNE
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.fields import coerce, field_types, from_flat
from lmtrain.interop.open import SOURCES, open_model
from lmtrain.interop.provenance import Provenance
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import build_model, model_keys
from lmtrain.train_config import TrainConfig

INIT_PRESET = "init-from"
"""The preset name of a run started from a trained model (its model is PATH's, not a preset's)."""
OVERRIDABLE = ("dropout",)
"""Model keys a run may set differently from the model it starts from (the context length is --seq-len, up to the
model's max_seq_len)."""


@dataclass(frozen=True)
class Start:
    """The trained model a run starts from: its config, weights, tokenizer and where they came from."""

    model: ModelConfig
    weights: dict[str, torch.Tensor]
    tokenizer: str | None
    """The --tokenizer value that rebuilds its tokenizer (None: PATH has none, so --tokenizer must be given)."""
    provenance: Provenance

    @property
    def path(self) -> Path:
        """What the run starts from (a checkpoint folder, a transformers folder, a GGUF file)."""
        return self.provenance.path

    def record(self) -> dict[str, Any]:
        """What config.json and the report say about where the run started."""
        return self.provenance.record()


def open_start(path: Path) -> Start:
    """The model at PATH (a transformers folder, a GGUF file, an lmtrain run or checkpoint); what holds none is an
    error."""
    if not path.expanduser().exists():
        raise ConfigError(f"--init-from {path}: no such file or folder; give {SOURCES}")
    try:
        opened = open_model(path, which="best", weights="auto")
    except CheckpointError as exc:
        raise CheckpointError(f"--init-from {path}: {exc}") from None
    return Start(
        model=opened.config, weights=opened.weights, tokenizer=opened.tokenizer_arg, provenance=opened.provenance
    )


def _check_model_flags(flat: Mapping[str, Any], start: Start) -> dict[str, Any]:
    """The model overrides a run from `start` may make; a preset or a model flag that disagrees is an error."""
    if "preset" in flat:
        raise ConfigError(
            f"--preset {flat['preset']} and --init-from {start.path} both choose the model; give one of them"
        )
    if "arch" in flat and flat["arch"] != start.model.arch:
        raise ConfigError(
            f"--arch {flat['arch']} conflicts with --init-from {start.path}, a --arch {start.model.arch} model"
        )
    overrides: dict[str, Any] = {}
    types = field_types(type(start.model))
    for key, value in flat.items():
        if key not in model_keys() or key == "arch":
            continue
        if key not in types:
            raise ConfigError(
                f"--{key.replace('_', '-')} conflicts with --init-from {start.path}, a --arch {start.model.arch} model "
                f"without that setting"
            )
        value = coerce(value, types[key], key)
        if key in OVERRIDABLE:
            overrides[key] = value
            continue
        have = getattr(start.model, key)
        if value != have:
            raise ConfigError(
                f"--{key.replace('_', '-')} {value} conflicts with --init-from {start.path}, whose model has "
                f"{key}={have}; the model comes from it (only {', '.join(OVERRIDABLE)} may change)"
            )
    return overrides


def start_config(flat: Mapping[str, Any], start: Start, tokenizer_of: Callable[[DataConfig], Any]) -> RunConfig:
    """The config of a new run from `start` and the run's flat keys (flags and TOML merged)."""
    flat = normalise_keys(flat, "the run config")
    overrides = _check_model_flags(flat, start)
    data_keys = {k: v for k, v in flat.items() if k not in model_keys() and k not in ("preset", "arch")}
    if start.tokenizer is None and "tokenizer" not in data_keys:
        raise ConfigError(
            f"--init-from {start.path} holds no tokenizer (tokenizer.json); give the model's own with --tokenizer"
        )
    if start.tokenizer is not None and "tokenizer" in data_keys:
        given = tokenizer_of(DataConfig(tokenizer=str(data_keys["tokenizer"])))
        own = tokenizer_of(DataConfig(tokenizer=start.tokenizer))
        if given.fingerprint() != own.fingerprint():
            raise ConfigError(
                f"--tokenizer {data_keys['tokenizer']} is not the tokenizer of --init-from {start.path} "
                f"({own.describe()}); leave --tokenizer out to use it"
            )
    data_keys.setdefault("tokenizer", start.tokenizer)
    parts: dict[str, dict[str, Any]] = {"data": {}, "train": dict(FINETUNE)}
    for key, value in data_keys.items():
        parts[section_of(key)][key] = value
    return RunConfig(
        preset=INIT_PRESET,
        model=dataclasses.replace(start.model, **overrides),
        data=from_flat(DataConfig, parts["data"], "data config"),
        train=from_flat(TrainConfig, parts["train"], "training config"),
        origin=start.record(),
    )


def fit_vocabulary(start: Start, cfg: RunConfig, tokenizer_of: Callable[[DataConfig], Any]) -> tuple[Start, RunConfig]:
    """`start` and `cfg` with the model's vocabulary grown to the run's tokenizer where the run adds tokens to the
    start's (ChatML's, `data/chat/tokenizer.py`); unchanged otherwise."""
    base = tokenizer_of(DataConfig(tokenizer=cfg.data.tokenizer)).vocab_size
    wanted = tokenizer_of(cfg.data).vocab_size
    if wanted <= base:
        return start, cfg
    grown = grow_vocabulary(start, vocab_size=max(wanted, start.model.vocab_size), added=range(base, wanted))
    return grown, dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=grown.model.vocab_size))


def grow_vocabulary(start: Start, *, vocab_size: int, added: range) -> Start:
    """`start` with `vocab_size` ids: the token embedding (and an untied head) keep their rows, the rows of the
    `added` ids start at the mean of the rows before them (transformers' and TRL's choice: a new token starts as
    an average one, neither certain nor impossible), padding rows at zero."""
    old = build_model(start.model)
    old.load_state_dict(start.weights, strict=True)
    cfg = dataclasses.replace(start.model, vocab_size=vocab_size)
    tables = {old.token_embedding.data_ptr(), old.output_weight.data_ptr()}
    held = old.state_dict()
    weights: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, tensor in start.weights.items():
            if held[name].data_ptr() not in tables:
                weights[name] = tensor
                continue
            grown = tensor.new_zeros((cfg.padded_vocab, *tensor.shape[1:]))
            kept = min(start.model.vocab_size, vocab_size)
            grown[:kept] = tensor[:kept]
            grown[added.start : added.stop] = tensor[: added.start].float().mean(0).to(tensor.dtype)
            weights[name] = grown
    return dataclasses.replace(start, model=cfg, weights=weights)
