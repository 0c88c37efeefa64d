"""KV-cache speed-up: the same greedy generation with and without the cache, in one run."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from lmtrain.eval.generate import generate
from lmtrain.model.base import CausalLM
from lmtrain.runtime import synchronize


def _timed(
    model: CausalLM, prompt: torch.Tensor, new_tokens: int, use_cache: bool, device: torch.device
) -> tuple[float, torch.Tensor]:
    synchronize(device)
    t0 = time.perf_counter()
    out = generate(model, prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    synchronize(device)
    return time.perf_counter() - t0, out


def bench_generate(
    model: CausalLM, device: torch.device, new_tokens: int = 256, prompt_tokens: int = 16, repeats: int = 3
) -> dict[str, Any]:
    """Best-of-`repeats` seconds for `new_tokens` greedy tokens with and without the KV cache."""
    cfg = model.config
    if prompt_tokens + new_tokens > cfg.max_seq_len:
        raise ValueError(f"prompt {prompt_tokens} + {new_tokens} new tokens exceed max_seq_len={cfg.max_seq_len}")
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)).to(device)
    _timed(model, prompt, 8, True, device)  # warm-up
    _timed(model, prompt, 8, False, device)
    cached = min(_timed(model, prompt, new_tokens, True, device) for _ in range(repeats))
    uncached = min(_timed(model, prompt, new_tokens, False, device) for _ in range(repeats))
    return {
        "bench": "generate",
        "new_tokens": new_tokens,
        "prompt_tokens": prompt_tokens,
        "seconds_cached": round(cached[0], 3),
        "seconds_uncached": round(uncached[0], 3),
        "tokens_per_s_cached": round(new_tokens / cached[0], 1),
        "tokens_per_s_uncached": round(new_tokens / uncached[0], 1),
        "speedup": round(uncached[0] / cached[0], 2),
        "identical_tokens": bool(torch.equal(cached[1], uncached[1])),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
