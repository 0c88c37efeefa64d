"""`lmtrain bench train`: which measurement a call asks for (the plain timing against a peer, the largest or the
fastest micro-batch, or scaling under torchrun), each checked against what the world allows, and every MFU checked
against the measured peak."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lmtrain.bench.batch import best_batch, max_batch
from lmtrain.bench.scaling import bench_scaling
from lmtrain.bench.timing import TrainBench, bench_train, mfu_fields
from lmtrain.distributed.world import World
from lmtrain.errors import ConfigError
from lmtrain.hardware import peak_flops, stale_note


def checked_peak(result: dict[str, Any], *, device: torch.device, dtype: str, cache_dir: Path | None) -> dict[str, Any]:
    """`result` with its MFU checked: above 100%, the peak is measured again (keeping the higher) and the MFU
    recomputed; still above, `peak_stale` is true and `peak_note` says how to refresh the peak."""
    if result["mfu"] > 1.0:
        peak = peak_flops(device, dtype, cache_dir, remeasure=True)
        result = result | mfu_fields(result["tokens_per_s"], result["flops_per_token"], peak)
        result["peak_remeasured"] = True
    note = stale_note(result["mfu"], cache_dir)
    return result | {"peak_stale": note is not None} | ({"peak_note": note} if note else {})


def train_bench(
    bench: TrainBench,
    world: World,
    *,
    cache_dir: Path,
    max_batch_limit: int | None = None,
    best_batch_limit: int | None = None,
    against_hf: bool = False,
    profile: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """The result of the measurement the flags ask for (None on ranks other than 0 under torchrun): scaling under
    torchrun, else the largest micro-batch (`max_batch_limit`), the fastest (`best_batch_limit`) or the timing of
    `bench` (against transformers with `against_hf`)."""
    split = bench.layout(world.world_size)
    ranks = f"{split.per_rank} per rank, " if world.world_size > 1 else ""
    what = (
        f"batch {bench.batch_size} x {bench.seq_len} ({ranks}micro-batch {split.micro}, accumulation "
        f"{split.accumulation}), {bench.dtype} on {bench.device}"
    )
    if world.distributed:
        if max_batch_limit is not None or best_batch_limit is not None or against_hf or profile:
            raise ConfigError(
                "under torchrun, bench train measures scaling; run --max-batch, --best-batch, --against and --profile "
                "in one process"
            )
        if world.is_main:
            log(f"bench train: {what}; one rank alone, then {world.world_size} ranks ({bench.parallel})")
        return bench_scaling(bench, world)
    if max_batch_limit is not None and best_batch_limit is not None:
        raise ConfigError("give --max-batch or --best-batch, not both")
    for flag, limit in (("--max-batch", max_batch_limit), ("--best-batch", best_batch_limit)):
        if limit is not None and limit < 1:
            raise ConfigError(f"{flag} must be at least 1")
    if max_batch_limit is not None:
        log(f"bench train: largest micro-batch up to {max_batch_limit} for {what}")
        return {"bench": "max_batch", "dtype": bench.dtype} | max_batch(bench, max_batch_limit)
    peak = peak_flops(bench.device, bench.dtype, cache_dir)
    if best_batch_limit is not None:
        log(f"bench train: the fastest micro-batch up to {best_batch_limit} for {what}")
        return {"device_name": peak.device_name} | best_batch(bench, peak, best_batch_limit)
    log(f"bench train: {what}; peak {peak.measured_flops / 1e12:.3g} TFLOP/s measured ({peak.device_name})")
    result = bench_train(bench, peak, against_hf=against_hf, profile=profile)
    result = checked_peak(result, device=bench.device, dtype=bench.dtype, cache_dir=cache_dir)
    if result["peak_stale"]:
        log(f"note: {result['peak_note']}")
    return {"device_name": peak.device_name} | result
