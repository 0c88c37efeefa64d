"""Self-describing checkpoints, written atomically: weights (safetensors), config.json, trainer state.

RUN/checkpoints/step_0001000/{model.safetensors, config.json, trainer_state.pt}, plus the text files
`latest` and `best` naming a checkpoint folder. A checkpoint is written under a temporary name and renamed
complete; markers are replaced atomically; old checkpoints are renamed away before they are deleted. A
process killed at any moment leaves `latest` pointing at a complete, loadable checkpoint.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.carry import carry_tokenizer
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.files import atomic_dir, remove_dir, remove_stale_temps, write_text_atomic
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import model_from_dict
from lmtrain.runtime import unwrap
from lmtrain.train_config import Weights

MODEL_FILE = "model.safetensors"
EMA_FILE = "model_ema.safetensors"
"""The averaged weights of a run trained with --ema, beside the raw ones."""
WEIGHTS: tuple[str, ...] = typing.get_args(Weights)
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"
MARKERS = ("latest", "best")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after `step` optimizer steps."""
    return f"step_{step:07d}"


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the unwrapped model (no `_orig_mod.` or `module.` prefixes), contiguous, on the CPU, copied (so
    it stays as it is when the model changes)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in unwrap(model).state_dict().items()}


def write_checkpoint(
    final: Path,
    weights: dict[str, torch.Tensor],
    config: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
    ema: dict[str, torch.Tensor] | None = None,
    *,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write a checkpoint folder atomically: weights (and their EMA), config.json, (to resume training) trainer
    state, and the files that rebuild `tokenizer` (`carry.py`)."""
    with atomic_dir(final, replace=True) as tmp:
        if tokenizer is not None:
            carry_tokenizer(tokenizer, tmp)
        save_file(weights, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        if ema is not None:
            save_file(ema, str(tmp / EMA_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE_FILE)
    return final


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    weights: dict[str, torch.Tensor],
    config: dict[str, Any],
    trainer_state: dict[str, Any],
    keep_last: int,
    is_best: bool,
    ema: dict[str, torch.Tensor] | None = None,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write checkpoint `step` atomically, update the `latest` (and `best`) markers, keep the last `keep_last`.

    `weights` is the unwrapped model's state on the CPU (`model_state`, or gathered from the shards)."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = write_checkpoint(root / checkpoint_name(step), weights, config, trainer_state, ema, tokenizer=tokenizer)
    write_text_atomic(root / "latest", final.name + "\n")
    if is_best:
        write_text_atomic(root / "best", final.name + "\n")
    prune(root, keep_last)
    return final


def _step_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step_*") if p.is_dir() and (p / MODEL_FILE).is_file())


def read_marker(root: Path, which: str) -> Path | None:
    """The checkpoint folder a marker names, or None when the marker or its folder is missing."""
    try:
        name = (root / which).read_text().strip()
    except OSError:
        return None
    path = root / name
    return path if name.startswith("step_") and path.is_dir() else None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, never the ones `latest` or `best` name."""
    protected = {read_marker(root, m) for m in MARKERS}
    for path in _step_dirs(root)[:-keep_last]:
        if path not in protected:
            remove_dir(path)
    remove_stale_temps(root, ".step_*.*-*")


def resolve_checkpoint(path: Path, which: str = "latest") -> Path:
    """The checkpoint folder for `path`: itself if it is one, else the run folder's `which` marker."""
    if (path / MODEL_FILE).is_file() or (path / CONFIG_FILE).is_file() and not (path / CHECKPOINTS).is_dir():
        return path
    root = path / CHECKPOINTS
    if not root.is_dir():
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give a run folder or a checkpoint folder")
        raise CheckpointError(f"{path} is neither a checkpoint folder ({MODEL_FILE}) nor a run folder ({CHECKPOINTS}/)")
    found = read_marker(root, which) or read_marker(root, "latest")
    if found is None:
        steps = _step_dirs(root)
        if not steps:
            raise CheckpointError(f"{path} holds no checkpoint yet")
        found = steps[-1]
    return found


def load_checkpoint_config(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's config.json; a missing or unreadable one is a CheckpointError."""
    try:
        config = json.loads((ckpt / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt} has no {CONFIG_FILE}; it is not a complete lmtrain checkpoint") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{ckpt / CONFIG_FILE} is unreadable ({exc})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{ckpt / CONFIG_FILE} has no model config")
    return config


def model_config_of(config: dict[str, Any], ckpt: Path) -> ModelConfig:
    """The model config stored in a checkpoint config (GPT-2's when it names no `arch`); a bad one is a
    CheckpointError."""
    try:
        return model_from_dict(config["model"], f"{ckpt / CONFIG_FILE}")
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt / CONFIG_FILE}: {exc}") from None


def weights_file(ckpt: Path, which: str = "raw") -> Path:
    """The weights `--weights` names: raw, ema (a CheckpointError when the run had no --ema), or auto."""
    if which not in WEIGHTS:
        raise ConfigError(f"--weights {which}: choose {', '.join(WEIGHTS)}")
    has_ema = (ckpt / EMA_FILE).is_file()
    if which == "ema" and not has_ema:
        raise CheckpointError(f"{ckpt} has no EMA weights (its run was trained without --ema); use --weights raw")
    return ckpt / (EMA_FILE if which == "ema" or (which == "auto" and has_ema) else MODEL_FILE)


def load_weights(ckpt: Path, which: str = "raw") -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (`which`: raw, ema or auto); a missing or damaged file is a CheckpointError."""
    path = weights_file(ckpt, which)
    if not path.is_file():
        raise CheckpointError(f"{ckpt} has no {path.name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged or truncated ({exc}); use another checkpoint") from None


def load_state_into(model: nn.Module, weights: dict[str, torch.Tensor], ckpt: Path) -> None:
    """Copy `weights` into `model`; missing, extra or differently shaped tensors are a CheckpointError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise CheckpointError(f"{ckpt / MODEL_FILE} does not match its config.json: {what}")
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{ckpt / MODEL_FILE} does not match its config.json: {name} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(weights, strict=True)


def load_model(ckpt: Path, device: torch.device | str = "cpu", weights: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model from a checkpoint alone (no architecture flags) and load its weights (`weights`: auto, the
    EMA where the checkpoint has one, else the raw weights; ema; raw)."""
    config = load_checkpoint_config(ckpt)
    return model_holding(model_config_of(config, ckpt), load_weights(ckpt, weights), device, ckpt), config


def model_holding(cfg: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device | str, where: Path) -> Any:
    """A model of `cfg` on `device` in eval mode holding `weights` (built on the meta device: no initialisation);
    `where` names them in errors."""
    from lmtrain.model.registry import build_model

    with torch.device("meta"):
        model = build_model(cfg)
    model = model.to_empty(device=device)
    load_state_into(model, weights, where)
    return model.eval()


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's trainer state, loaded with weights_only=True."""
    path = ckpt / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{ckpt} has no {STATE_FILE}; it cannot resume training")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}); resume from another checkpoint") from None
