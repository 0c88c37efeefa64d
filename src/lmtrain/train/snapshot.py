"""A training checkpoint: what it holds besides the weights (config.json, trainer state), gathering and writing it
from every rank, and restoring it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmtrain import checkpoint as ckpt
from lmtrain.config import RunConfig
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.distributed.world import World, rank_seed
from lmtrain.runtime import rng_state, set_rng_state
from lmtrain.train.ema import EMA
from lmtrain.train.parallel import full_model_state, full_optimizer_state, load_optimizer_state
from lmtrain.train.resume import Restore
from lmtrain.train.step import TrainStep
from lmtrain.train_config import BatchLayout


@dataclass(frozen=True, kw_only=True)
class Position:
    """Where a run is when it writes a checkpoint, and what it is trained and scored on."""

    step: int
    epoch: float
    total_steps: int
    eval_windows: int
    """Validation windows each evaluation scores (the same ones every time)."""
    sources: Mapping[str, Mapping[str, Any]]
    """Per split: sha256 of the source file, tokens, documents."""


def run_record(cfg: RunConfig, layout: BatchLayout, *, parallel: str, backend: str | None) -> dict[str, Any]:
    """config.json of the run folder: the config, and how the run is spread over processes (`parallel`: single, ddp
    or fsdp)."""
    spread = {
        "world_size": layout.world_size,
        "parallel": parallel,
        "backend": backend,
        "global_batch": layout.global_batch,
        "per_rank_batch": layout.per_rank,
        "micro_batch": layout.micro,
        "accumulation": layout.accumulation,
    }
    return {**cfg.to_dict(), "distributed": spread}


def checkpoint_config(cfg: RunConfig, at: Position, *, val_loss: float | None, tokenizer: Tokenizer) -> dict[str, Any]:
    """config.json of a checkpoint: the run config, the step, its validation loss and on which windows, the data."""
    return {
        **cfg.to_dict(),
        "checkpoint": {
            "step": at.step,
            "epoch": at.epoch,
            "val_loss": val_loss,
            "total_steps": at.total_steps,
            "val_weights": "ema" if cfg.train.optimizer.ema else "raw",
        },
        "evaluation": {
            "windows": at.eval_windows,
            "seq_len": cfg.seq_len,
            "valid_sha256": at.sources["valid"]["sha256"],
        },
        "tokenizer": tokenizer.fingerprint(),
        "data_sources": {s: {"sha256": v["sha256"], "tokens": v["tokens"]} for s, v in at.sources.items()},
    }


def trainer_state(
    cfg: RunConfig,
    at: Position,
    *,
    optimizer_state: dict[str, Any],
    scaler: torch.amp.GradScaler,
    best_val_loss: float,
    rng_ranks: list[dict[str, Any]],
) -> dict[str, Any]:
    """trainer_state.pt: optimizer (keyed by parameter name), loss scaler, every rank's RNG states, data position and
    identity, best validation loss."""
    return {
        "step": at.step,
        "epoch": at.epoch,
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict(),
        "rng": rng_ranks[0],
        "rng_ranks": rng_ranks,
        "data": {
            "position": at.step,
            "seed": cfg.train.seed,
            "seq_len": cfg.seq_len,
            "batch_size": cfg.train.batch_size,
            "train_sha256": at.sources["train"]["sha256"],
            "valid_sha256": at.sources["valid"]["sha256"],
            "eval_windows": at.eval_windows,
        },
        "best_val_loss": best_val_loss,
    }


def save_snapshot(
    cfg: RunConfig,
    at: Position,
    *,
    out: Path,
    step: TrainStep,
    ema: EMA | None,
    world: World,
    val_loss: float | None,
    best_val_loss: float,
    is_best: bool,
    tokenizer: Tokenizer,
) -> Path | None:
    """Write the checkpoint of `at.step` of the run `step` trains (and `ema`, its averaged weights) into run folder
    `out` (`best` names it when `is_best`); its folder
    on rank 0, None elsewhere. Every rank takes part (whole weights and optimizer state are gathered from the shards)
    and waits until the checkpoint is complete."""
    config = checkpoint_config(cfg, at, val_loss=val_loss, tokenizer=tokenizer)
    weights = full_model_state(step.model, world)
    averaged = None
    if ema is not None:
        with ema.swapped():
            averaged = full_model_state(step.model, world)
    optimizer = full_optimizer_state(step.model, step.optimizer, world)
    rngs = world.gather_objects(rng_state())
    path = None
    if world.is_main:
        state = trainer_state(
            cfg, at, optimizer_state=optimizer, scaler=step.scaler, best_val_loss=best_val_loss, rng_ranks=rngs
        )
        path = ckpt.save_checkpoint(
            out,
            at.step,
            weights=weights,
            config=config,
            trainer_state=state,
            keep_last=cfg.train.checkpoints.keep_last,
            is_best=is_best,
            ema=averaged,
            tokenizer=tokenizer,
        )
    world.barrier()  # no rank goes on (or exits) before the checkpoint is complete
    return path


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
