"""Scaling under torchrun: the trainer's step on one rank alone, then on every rank together (DDP or FSDP2).

`--batch-size` is the global batch, as for `lmtrain train`: under N ranks each trains on its share. First rank 0
trains alone on one share while the others wait (the one-rank baseline, on the same kind of device), then every rank
trains together on its own share of the global batch. The scaling efficiency is the total tokens/s over N times the
one-rank tokens/s: 1.0 is perfect scaling; the rest is communication the step could not hide and waiting for the
slowest rank.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import torch

from lmtrain.bench.timing import TrainBench, random_tokens, summary, train_side
from lmtrain.distributed.world import World
from lmtrain.model.registry import build_model


def _timed(b: TrainBench, world: World) -> dict[str, Any]:
    """Median step time and tokens/s of this rank's steps, as a rank of `world` (a world of one: alone)."""
    tokens = random_tokens(b)
    torch.manual_seed(0)
    model = build_model(b.model, loss_impl=b.loss).to(b.device)
    side = train_side(model, b, tokens, world)
    side.run(b.warmup, b.device, timed=False)
    side.run(b.steps, b.device)
    timed = summary(side.seconds, b.layout(world.world_size).per_rank * b.seq_len)
    del side, model
    gc.collect()
    if b.device.type == "cuda":
        torch.cuda.empty_cache()
    return timed


def bench_scaling(b: TrainBench, world: World) -> dict[str, Any] | None:
    """Per-rank and total tokens/s of `world` training together, and the efficiency against one rank alone; the
    result on rank 0, None on the others. Every rank must call it."""
    share = b.layout(world.world_size)
    alone = None
    if world.is_main:
        one = dataclasses.replace(b, batch_size=share.per_rank)
        alone = _timed(one, World(device=b.device, timeout_s=world.timeout_s))
    world.barrier()
    together = world.gather_objects(_timed(b, world))
    if not world.is_main:
        return None
    assert alone is not None
    total = sum(r["tokens_per_s"] for r in together)
    return {
        "bench": "train_scaling",
        "parallel": b.parallel,
        "backend": world.backend,
        "world_size": world.world_size,
        "batch_size": b.batch_size,
        "per_rank_batch": share.per_rank,
        "micro_batch_size": share.micro,
        "accumulation": share.accumulation,
        "seq_len": b.seq_len,
        "tokens_per_step_per_rank": share.per_rank * b.seq_len,
        "dtype": b.dtype,
        "compile": b.compile,
        "one_rank": alone,
        "per_rank": together,
        "total_tokens_per_s": round(total, 1),
        "scaling_efficiency": round(total / (world.world_size * alone["tokens_per_s"]), 4),
    }
