"""Device, precision, model wrapping and RNG state: the hardware-facing parts shared by training and inference."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lmtrain.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
"""Devices where torch's fused AdamW kernel runs."""


def select_device(name: str) -> torch.device:
    """The device for `--device`: auto picks cuda, then mps, then cpu; an unavailable one is a ConfigError."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda, but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not mps:
        raise ConfigError("--device mps, but MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def select_dtype(name: str, device: torch.device) -> str:
    """The autocast precision for `--dtype`: auto is bf16 on CUDA that supports it, else fp32."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("--dtype fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return name


def configure_device(device: torch.device) -> None:
    """Process-wide settings for fast training on `device`: TF32 tensor cores for fp32 matmuls on CUDA.

    On the CPU torch already uses one thread per physical core (OMP_NUM_THREADS overrides it).
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on the CPU, whose work is done when a call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast context for the forward pass (a no-op for fp32)."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def unwrap(model: nn.Module) -> nn.Module:
    """The original module behind torch.compile or DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            return model
        model = inner


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA RNG states in types `torch.load(weights_only=True)` accepts."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (a trial step, a sample) without changing any RNG the run depends on."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode (no dropout) for the block; its train or eval mode is restored afterwards, whatever the
    block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory on `device` (GPU memory, or the machine's RAM for the CPU); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"
"""What torch's CPU allocator says when an allocation fails: it raises a plain RuntimeError, so this is the one place
lmtrain has to recognise a failure by its text (a CUDA, MPS or Python allocation failure has a type)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure on any device: torch.OutOfMemoryError (CUDA), MemoryError (Python, NumPy), or the CPU
    allocator's RuntimeError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and CPU_ALLOCATOR_FAILURE in str(exc)
