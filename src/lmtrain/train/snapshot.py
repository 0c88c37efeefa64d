"""What a training checkpoint holds besides the weights: its config.json and trainer state, and restoring them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmtrain.config import RunConfig
from lmtrain.data.tokenizer import Tokenizer
from lmtrain.runtime import set_rng_state
from lmtrain.train.distributed import World, load_optimizer_state, rank_seed
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
        "checkpoint": {
            "step": step,
            "epoch": epoch,
            "val_loss": val_loss,
            "total_steps": total_steps,
            "val_weights": "ema" if cfg.train.ema else "raw",
        },  # fmt: skip
        "evaluation": {"windows": eval_windows, "seq_len": cfg.seq_len, "valid_sha256": sources["valid"]["sha256"]},
        "tokenizer": tokenizer.fingerprint(),
        "data_sources": {s: {"sha256": v["sha256"], "tokens": v["tokens"]} for s, v in sources.items()},
    }


def trainer_state(
    cfg: RunConfig,
    step: int,
    epoch: float,
    optimizer_state: dict[str, Any],
    scaler: torch.amp.GradScaler,
    best_val_loss: float,
    eval_windows: int,
    sources: Mapping[str, Mapping[str, Any]],
    rng_ranks: list[dict[str, Any]],
) -> dict[str, Any]:
    """trainer_state.pt: optimizer (keyed by parameter name), loss scaler, every rank's RNG states, data position and
    identity, best validation loss."""
    return {
        "step": step,
        "epoch": epoch,
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict(),
        "rng": rng_ranks[0],
        "rng_ranks": rng_ranks,
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


def restore_state(
    restore: Restore,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    world: World,
) -> tuple[int, float]:
    """Load a checkpoint's optimizer, scaler and this rank's RNG states (the weights are loaded before wrapping);
    its (step, best validation loss). On another number of ranks, ranks the checkpoint lacks start new streams."""
    load_optimizer_state(model, optimizer, restore.state["optimizer"])
    scaler.load_state_dict(restore.state["scaler"])
    ranks = restore.state.get("rng_ranks") or [restore.state["rng"]]
    if world.rank < len(ranks):
        set_rng_state(ranks[world.rank])
    else:
        torch.manual_seed(rank_seed(int(restore.state["data"]["seed"]) + restore.step, world.rank))
    return restore.step, float(restore.state["best_val_loss"])
