"""Micro-batches: the largest whose step fits in memory (`max_batch`), and the one that maximises training tokens/s
(`best_batch`: each power of two up to the largest that fits, and that largest, timed with the trainer's own step;
the fastest wins)."""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import torch

from lmtrain.bench.timing import TrainBench, bench_train, peak_memory, random_tokens, train_side
from lmtrain.errors import ConfigError
from lmtrain.hardware import Peak
from lmtrain.model.base import CausalLM
from lmtrain.model.registry import build_model
from lmtrain.runtime import is_out_of_memory, synchronize


def batch_candidates(largest: int) -> list[int]:
    """Powers of two up to `largest`, and `largest` itself."""
    return sorted({1 << i for i in range(largest.bit_length()) if 1 << i <= largest} | {largest})


def best_batch(b: TrainBench, peak: Peak, limit: int) -> dict[str, Any]:
    """Time `b` at each candidate micro-batch (one micro-batch per step) and name the fastest."""
    found = max_batch(b, limit)
    if found["max_batch"] == 0:
        raise ConfigError(f"not even one sequence of {b.seq_len} tokens fits in memory; lower --seq-len")
    rows = []
    for micro in batch_candidates(found["max_batch"]):
        timed = bench_train(dataclasses.replace(b, batch_size=micro, micro_batch_size=None), peak)
        keep = ("tokens_per_s", "step_ms", "mfu", "peak_memory_bytes", "eval_tokens_per_s")
        rows.append({"micro_batch": micro} | {k: timed[k] for k in keep})
    best = max(rows, key=lambda row: row["tokens_per_s"])
    return {
        "bench": "best_batch",
        **found,
        "compile": b.compile,
        "optimizer": b.optimizer,
        "dtype": b.dtype,
        "candidates": rows,
        "best_batch": best["micro_batch"],
        "best_tokens_per_s": best["tokens_per_s"],
        "best_mfu": best["mfu"],
    }


def _fits(b: TrainBench, batch: int, model: CausalLM) -> int | None:
    """Peak memory of one optimizer step at micro-batch `batch`, or None when it runs out of memory."""
    trial = dataclasses.replace(b, batch_size=batch, micro_batch_size=None, compile=False)
    if b.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(b.device)
    try:
        train_side(model, trial, random_tokens(trial)).step(0)
        synchronize(b.device)
        return peak_memory(b.device)[0]
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        return None
    finally:
        model.zero_grad(set_to_none=True)
        gc.collect()


def max_batch(b: TrainBench, limit: int = 1024) -> dict[str, Any]:
    """The largest micro-batch (up to `limit`) whose optimizer step fits in memory at `b.seq_len`: doubling, then
    bisection between the last size that fit and the first that did not."""
    model = build_model(b.model, loss_impl=b.loss).to(b.device)
    fit, fail, memory = 0, limit + 1, 0
    batch = 1
    while batch <= limit:
        used = _fits(b, batch, model)
        if used is None:
            fail = batch
            break
        fit, memory, batch = batch, used, batch * 2
    while fail - fit > 1 and fit < limit:
        middle = (fit + fail) // 2
        used = _fits(b, middle, model)
        if used is None:
            fail = middle
        else:
            fit, memory = middle, used
    return {"max_batch": fit, "max_batch_limit": limit, "max_batch_peak_memory_bytes": memory, "seq_len": b.seq_len}
