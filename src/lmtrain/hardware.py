"""Peak matmul throughput of a device, measured and cached, for MFU (model FLOPs utilisation).

MFU = tokens/s x training FLOPs per token (`model.sizing.flops_per_token`) / peak FLOP/s. The peak is what this
device reaches on a square matmul in the run's dtype: the matrix doubles from 512 until the throughput stops growing
(the plateau) or one matmul takes long enough, each size timed several times, the best kept. It is cached per
device, dtype, torch version and thread count (`peak_flops.json` in the cache folder), and a later measurement only
ever raises it (a machine that was busy once must not lower it for good). A run whose own throughput exceeds the
cached peak measures it again; if it still exceeds it, the figure is reported with a note to refresh the peak
(`lmtrain bench peak --refresh`). The datasheet's dense figure is shown beside it where the device is known.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from lmtrain.files import write_text_atomic

if TYPE_CHECKING:  # torch is imported where a peak is measured, so that MFU text costs no torch import
    import torch

DATASHEET_TFLOPS: dict[tuple[str, str], float] = {
    # Dense tensor-core TFLOP/s from NVIDIA's datasheets (no sparsity); fp32 means TF32 tensor cores on these GPUs.
    ("H200", "bf16"): 989.0,
    ("H200", "fp16"): 989.0,
    ("H200", "fp32"): 495.0,
    ("H100 80GB HBM3", "bf16"): 989.0,  # SXM
    ("H100 80GB HBM3", "fp16"): 989.0,
    ("H100 80GB HBM3", "fp32"): 495.0,
    ("H100 PCIe", "bf16"): 756.0,
    ("H100 PCIe", "fp16"): 756.0,
    ("H100 PCIe", "fp32"): 378.0,
    ("H100 NVL", "bf16"): 835.0,
    ("A100", "bf16"): 312.0,
    ("A100", "fp16"): 312.0,
    ("A100", "fp32"): 156.0,
    ("L4", "bf16"): 121.0,
    ("A10G", "bf16"): 70.0,
}


PEAK_REFRESH = "lmtrain bench peak --refresh"
"""The command that measures the peak FLOP/s again and replaces the cached one."""


def mfu(tokens_per_s: float, flops_per_token: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: the training FLOP/s a throughput stands for, over a peak FLOP/s."""
    return tokens_per_s * flops_per_token / peak_flops


def mfu_text(utilisation: float) -> str:
    """An MFU as people read it: a percentage, and above 100% the note that the peak is stale and how to refresh it."""
    stale = f" (above the measured peak: {PEAK_REFRESH})" if utilisation > 1.0 else ""
    return f"{utilisation:.1%}{stale}"


PEAK_CACHE = "peak_flops.json"
"""The file in the cache folder holding the measured peaks."""
PLATEAU_GAIN = 1.05
"""Doubling the matmul size raised its throughput by less than this factor: the plateau is reached."""


@dataclass(frozen=True, kw_only=True)
class Peak:
    """A device's peak matmul throughput in one dtype."""

    device_name: str
    dtype: str
    measured_flops: float
    """FLOP/s of the best timed n x n matmul."""
    matmul_size: int
    datasheet_flops: float | None = None
    """The vendor's dense figure, where this device is in DATASHEET_TFLOPS."""
    measured_at: str = ""
    """When the figure was measured (UTC, ISO 8601)."""

    def mfu(self, tokens_per_s: float, flops_per_token: int) -> float:
        """Model FLOPs utilisation against the measured peak."""
        return mfu(tokens_per_s, flops_per_token, self.measured_flops)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and the threads torch uses."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def datasheet_flops(name: str, dtype: str) -> float | None:
    """The datasheet's dense FLOP/s for a device name containing a known model (longest match wins)."""
    matches = [
        (len(model), tflops) for (model, dt), tflops in DATASHEET_TFLOPS.items() if dt == dtype and model in name
    ]
    return max(matches)[1] * 1e12 if matches else None


def _timed_matmul(device: torch.device, dtype: str, n: int, repeats: int) -> tuple[float, float]:
    """(FLOP/s, seconds) of the fastest of `repeats` n x n matmuls, after one untimed."""
    import torch

    from lmtrain.runtime import DTYPES, synchronize

    torch_dtype = DTYPES[dtype]
    a = torch.randn(n, n, device=device).to(torch_dtype)
    b = torch.randn(n, n, device=device).to(torch_dtype)
    torch.mm(a, b)  # warm-up: kernel selection, allocator
    synchronize(device)
    seconds = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        seconds = min(seconds, time.perf_counter() - t0)
    return 2 * n**3 / max(seconds, 1e-9), seconds


def measure_peak(
    device: torch.device, dtype: str, *, budget_s: float = 0.2, max_size: int | None = None, repeats: int | None = None
) -> tuple[float, int]:
    """(FLOP/s, n) of the best n x n matmul: n doubles from 512 until doubling gains less than 5% (the plateau), one
    matmul takes `budget_s`, or n reaches the cap; each size is timed `repeats` times, the fastest kept."""
    cap = max_size or (16384 if device.type == "cuda" else 4096)
    repeats = repeats or (10 if device.type == "cuda" else 3)
    best, best_n, previous, n = 0.0, 512, 0.0, 512
    while True:
        flops, seconds = _timed_matmul(device, dtype, n, repeats)
        if flops > best:
            best, best_n = flops, n
        plateau = previous > 0 and flops < PLATEAU_GAIN * previous
        if plateau or seconds >= budget_s or n * 2 > cap:
            break
        previous, n = flops, n * 2
    return best, best_n


def _cache_key(name: str, dtype: str) -> str:
    import torch

    return f"{name}|{dtype}|torch {torch.__version__}"


def _read_cache(cache: Path | None) -> dict:
    if cache is None or not cache.is_file():
        return {}
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _cached(entry: object) -> Peak | None:
    """A cache entry as a Peak (entries of earlier versions lack `measured_at`); None when it is not one."""
    if not isinstance(entry, dict):
        return None
    known = {f.name for f in fields(Peak)}
    try:
        return Peak(**{k: v for k, v in entry.items() if k in known})
    except TypeError:
        return None


def peak_flops(
    device: torch.device, dtype: str, cache_dir: Path | None, *, remeasure: bool = False, replace: bool = False
) -> Peak:
    """The device's peak in `dtype`, from `cache_dir/peak_flops.json`, measured and cached when it is not there.

    `remeasure`: measure again and keep the higher of the two (a run that outpaced the cached peak). `replace`:
    measure again and keep the new figure whatever it is (`lmtrain bench peak --refresh` on a quiet machine)."""
    name = device_name(device)
    key = _cache_key(name, dtype)
    cache = cache_dir / PEAK_CACHE if cache_dir else None
    stored = _read_cache(cache)
    old = _cached(stored.get(key))
    if old is not None and not remeasure and not replace:
        return old
    flops, size = measure_peak(device, dtype)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    peak = Peak(
        device_name=name,
        dtype=dtype,
        measured_flops=flops,
        matmul_size=size,
        datasheet_flops=datasheet_flops(name, dtype),
        measured_at=when,
    )
    if old is not None and not replace and old.measured_flops >= peak.measured_flops:
        peak = old  # a measurement only ever raises the cached peak
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cache, json.dumps(stored | {key: asdict(peak)}, indent=2) + "\n")
        except OSError:
            pass  # a read-only cache only costs a re-measurement next time
    return peak


def stale_note(utilisation: float | None, cache_dir: Path | None) -> str | None:
    """What to say about an MFU above 100%: the cached peak is stale, and how to refresh it; None otherwise."""
    if utilisation is None or utilisation <= 1.0:
        return None
    where = f" ({cache_dir / PEAK_CACHE})" if cache_dir else ""
    return (
        f"MFU {utilisation:.1%} is above the measured peak{where}, even after measuring it again: the peak was "
        f"measured while the device was busy; refresh it on a quiet machine with `{PEAK_REFRESH}`"
    )
