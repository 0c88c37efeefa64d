"""Scaling under torchrun: the trainer's step on one rank alone, then on every rank together (DDP or FSDP2).

Each rank trains on its own micro-batch of `b.batch_size` sequences, so N ranks train on N times the tokens per
step. First rank 0 trains alone while the others wait (the one-rank baseline, on the same kind of device), then
every rank trains together. The scaling efficiency is the total tokens/s over N times the one-rank tokens/s: 1.0
is perfect scaling; the rest is communication the step could not hide and waiting for the slowest rank.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import torch

from lmtrain.bench.train import TrainBench, _Side, _summary, _train_step, random_tokens
from lmtrain.model.gpt import GPT
from lmtrain.train.distributed import World


def _timed(b: TrainBench, world: World | None, parallel: str) -> dict[str, Any]:
    """Median step time and tokens/s of this rank's steps (the world's, or alone without one)."""
    ranks = world.world_size if world is not None else 1
    tokens = random_tokens(dataclasses.replace(b, batch_size=b.batch_size * ranks))
    torch.manual_seed(0)
    model = GPT(b.model, loss_impl=b.loss).to(b.device)
    side = _Side(_train_step(model, b, tokens, 0, world, parallel), [])
    side.run(b.warmup, b.device, timed=False)
    side.run(b.steps, b.device)
    summary = _summary(side.seconds, b.tokens_per_step)
    del side, model
    gc.collect()
    if b.device.type == "cuda":
        torch.cuda.empty_cache()
    return summary


def bench_scaling(b: TrainBench, world: World, parallel: str) -> dict[str, Any] | None:
    """Per-rank and total tokens/s of `world` training together, and the efficiency against one rank alone; the
    result on rank 0, None on the others. Every rank must call it."""
    alone = _timed(b, None, parallel) if world.is_main else None
    world.barrier()
    together = world.gather_objects(_timed(b, world, parallel))
    if not world.is_main:
        return None
    assert alone is not None
    total = sum(r["tokens_per_s"] for r in together)
    return {
        "bench": "train_scaling",
        "parallel": parallel,
        "backend": world.backend,
        "world_size": world.world_size,
        "batch_size": b.batch_size,
        "grad_accum": b.grad_accum,
        "seq_len": b.seq_len,
        "tokens_per_step_per_rank": b.tokens_per_step,
        "dtype": b.dtype,
        "compile": b.compile,
        "one_rank": alone,
        "per_rank": together,
        "total_tokens_per_s": round(total, 1),
        "scaling_efficiency": round(total / (world.world_size * alone["tokens_per_s"]), 4),
    }
