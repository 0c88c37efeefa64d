"""The micro-batch that maximises training tokens/s: the largest that fits (`max_batch`), then each power of two up
to it, and that largest, timed with the trainer's own step; the fastest wins."""

from __future__ import annotations

import dataclasses
from typing import Any

from lmtrain.bench.train import TrainBench, bench_train, max_batch
from lmtrain.errors import ConfigError
from lmtrain.hardware import Peak


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
