"""Peak matmul throughput of a device, measured on the spot and cached, for MFU (model FLOPs utilisation).

MFU = tokens/s x training FLOPs per token (`model.sizing.flops_per_token`) / peak FLOP/s. The peak is what this
device reaches on a large square matmul in the run's dtype (cached per device, dtype, torch version and thread
count), so an MFU near 1 means the step runs as fast as matmuls can on this device. The datasheet's dense figure is
shown beside it where the device is known.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lmtrain.files import write_text_atomic
from lmtrain.model.sizing import mfu
from lmtrain.runtime import DTYPES, synchronize

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


@dataclass(frozen=True)
class Peak:
    """A device's peak matmul throughput in one dtype."""

    device_name: str
    dtype: str
    measured_flops: float
    """FLOP/s of the best timed n x n matmul."""
    matmul_size: int
    datasheet_flops: float | None
    """The vendor's dense figure, where this device is in DATASHEET_TFLOPS."""

    def mfu(self, tokens_per_s: float, flops_per_token: int) -> float:
        """Model FLOPs utilisation against the measured peak."""
        return mfu(tokens_per_s, flops_per_token, self.measured_flops)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and the threads torch uses."""
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


def measure_peak(
    device: torch.device, dtype: str, budget_s: float = 0.05, max_size: int | None = None
) -> tuple[float, int]:
    """(FLOP/s, n) of the best n x n matmul, n doubling from 512 until one matmul takes `budget_s` or n hits the cap."""
    cap = max_size or (16384 if device.type == "cuda" else 4096)
    torch_dtype = DTYPES[dtype]
    best, size, n = 0.0, 512, 512
    while True:
        a = torch.randn(n, n, device=device).to(torch_dtype)
        b = torch.randn(n, n, device=device).to(torch_dtype)
        torch.mm(a, b)  # warm-up: kernel selection, allocator
        synchronize(device)
        repeats = 10 if device.type == "cuda" else 2
        seconds = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            seconds = min(seconds, time.perf_counter() - t0)
        flops = 2 * n**3 / max(seconds, 1e-9)
        if flops > best:
            best, size = flops, n
        del a, b
        if seconds >= budget_s or n * 2 > cap:
            return best, size
        n *= 2


def peak_flops(device: torch.device, dtype: str, cache_dir: Path | None) -> Peak:
    """The device's peak in `dtype`: read from `cache_dir/peak_flops.json`, else measured and cached there."""
    name = device_name(device)
    key = f"{name}|{dtype}|torch {torch.__version__}"
    cache = cache_dir / "peak_flops.json" if cache_dir else None
    stored: dict = {}
    if cache is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text())
        except (OSError, ValueError):
            stored = {}
    if isinstance(stored.get(key), dict):
        return Peak(**stored[key])
    flops, size = measure_peak(device, dtype)
    peak = Peak(name, dtype, flops, size, datasheet_flops(name, dtype))
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cache, json.dumps(stored | {key: asdict(peak)}, indent=2) + "\n")
        except OSError:
            pass  # a read-only cache only costs a re-measurement next time
    return peak
