"""`lmtrain bench peak`: the device's measured peak matmul FLOP/s behind every MFU figure."""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path

from lmtrain.cli.common import add_device_option, default_cache_dir, emit_result, log
from lmtrain.train_config import DType


def register_bench(benches: argparse._SubParsersAction) -> None:
    peak = benches.add_parser(
        "peak",
        help="the device's peak matmul FLOP/s behind every MFU figure: show it, or --refresh it",
        description="Show the cached peak matmul throughput that MFU is measured against (measuring it if there is "
        "none). The peak is the best square matmul in the dtype, the size doubling until the throughput stops growing; "
        "a later measurement only ever raises it. --refresh measures it again and replaces it: run it on a quiet "
        "machine when an MFU above 100% says the cached peak was measured under load.",
    )
    add_device_option(peak)
    peak.add_argument(
        "--dtype",
        choices=typing.get_args(DType),
        default="auto",
        help="the dtype to measure (default auto: bf16 on a GPU that has it, else fp32)",
    )
    peak.add_argument("--refresh", action="store_true", help="measure again and replace the cached figure")
    peak.add_argument(
        "--cache-dir", type=Path, help="where the peak is cached (default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain)"
    )
    peak.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    peak.set_defaults(handler=run_peak_bench)


def run_peak_bench(args: argparse.Namespace) -> int:
    from lmtrain.hardware import PEAK_CACHE, peak_flops
    from lmtrain.runtime import configure_device, select_device, select_dtype

    device = select_device(args.device)
    configure_device(device)
    dtype = select_dtype(args.dtype, device)
    cache = args.cache_dir or default_cache_dir(os.environ)
    peak = peak_flops(device, dtype, cache, replace=args.refresh)
    log(
        f"bench peak: {peak.measured_flops / 1e12:.4g} TFLOP/s ({dtype}) on {peak.device_name}, n={peak.matmul_size}, "
        f"measured {peak.measured_at or 'by an earlier lmtrain'}; cached in {cache / PEAK_CACHE}"
    )
    return emit_result({"bench": "peak", "refreshed": args.refresh} | dataclasses.asdict(peak), args.out)
