"""What a training checkpoint holds besides the weights: its config.json and trainer state, and restoring them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain import checkpoint as ckpt
from lmtrain.config import RunConfig
from lmtrain.data.tokenizer import Tokenizer
from lmtrain.runtime import rng_state, set_rng_state
from lmtrain.train.resume import Restore


def checkpoint_config(
    cfg: RunConfig,
    step: int,
    epoch: float,
    total_steps: int,
    val_loss: float | None,
    eval_windows: int,
    sources: Mapping[str, Mapping[str, Any]],
    tokenizer: Tokenizer,
) -> dict[str, Any]:
    """config.json of a checkpoint: the run config, the step, its validation loss and on which windows, the data."""
    return {
        **cfg.to_dict(),
        "checkpoint": {"step": step, "epoch": epoch, "val_loss": val_loss, "total_steps": total_steps},
        "evaluation": {"windows": eval_windows, "seq_len": cfg.seq_len, "valid_sha256": sources["valid"]["sha256"]},
        "tokenizer": tokenizer.fingerprint(),
        "data_sources": {s: {"sha256": v["sha256"], "tokens": v["tokens"]} for s, v in sources.items()},
    }


def trainer_state(
    cfg: RunConfig,
    step: int,
    epoch: float,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    best_val_loss: float,
    eval_windows: int,
    sources: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """trainer_state.pt: optimizer, loss scaler, RNG states, data position and identity, best validation loss."""
    return {
        "step": step,
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_state(),
        "data": {
            "position": step,
            "seed": cfg.train.seed,
            "seq_len": cfg.seq_len,
            "batch_size": cfg.train.batch_size,
            "train_sha256": sources["train"]["sha256"],
            "valid_sha256": sources["valid"]["sha256"],
            "eval_windows": eval_windows,
        },
        "best_val_loss": best_val_loss,
    }


def restore_into(
    restore: Restore, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> tuple[int, float]:
    """Load a checkpoint's weights, optimizer, scaler and RNG states; its (step, best validation loss)."""
    ckpt.load_state_into(model, restore.weights, restore.checkpoint)
    optimizer.load_state_dict(restore.state["optimizer"])
    scaler.load_state_dict(restore.state["scaler"])
    set_rng_state(restore.state["rng"])
    return restore.step, float(restore.state["best_val_loss"])
