"""Training throughput: whole optimizer steps with the trainer's own `TrainStep`, against transformers in one run.

Each side trains on random tokens: forward, backward, gradient clipping and fused AdamW, timed step by step after
warm-up (the device is synchronised around each step). The two models are timed in alternating rounds so a noisy
machine slows both alike. `--against hf` builds transformers' GPT2LMHeadModel (sdpa attention) with the same config
and weights and trains it through the same `TrainStep`, with the loss transformers computes for
`labels=input_ids` (as `run_clm.py` trains).
"""

from __future__ import annotations

import dataclasses
import gc
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lmtrain.data.loader import TrainSampler, make_batch
from lmtrain.errors import ConfigError
from lmtrain.eval.loss import evaluate
from lmtrain.hardware import Peak
from lmtrain.model.config import GPTConfig
from lmtrain.model.gpt import GPT
from lmtrain.model.head import LossImpl
from lmtrain.model.sizing import flops_per_token, mfu, param_counts
from lmtrain.runtime import autocast, synchronize
from lmtrain.train.distributed import World, wrap_model
from lmtrain.train.failures import is_out_of_memory
from lmtrain.train.optim import build_optimizer
from lmtrain.train.schedule import ScheduleConfig
from lmtrain.train.step import TrainStep


@dataclass(frozen=True)
class TrainBench:
    """What `lmtrain bench train` times."""

    model: GPTConfig
    device: torch.device
    dtype: str
    batch_size: int
    """Micro-batch (sequences per forward pass)."""
    seq_len: int
    grad_accum: int = 1
    steps: int = 10
    """Timed steps per model (at least 10 for the median)."""
    warmup: int = 3
    compile: bool = False
    loss: LossImpl = "fused"
    optimizer: str = "adamw"
    """adamw, or muon (Muon for the block matrices at 3x the LR, AdamW for the rest), as `--optimizer`."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.warmup < 1:
            raise ConfigError("--batch-size, --grad-accum and --warmup-steps must be at least 1")
        if self.steps < 2:
            raise ConfigError("--steps must be at least 2")
        if not 1 <= self.seq_len <= self.model.max_seq_len:
            raise ConfigError(
                f"--seq-len {self.seq_len} must be between 1 and the model's max_seq_len={self.model.max_seq_len}"
            )

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.seq_len


class HFCausalLM(nn.Module):
    """transformers' GPT2LMHeadModel called the way `TrainStep` calls a model: (x, y) -> (None, loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.model(input_ids=x, labels=x).loss  # transformers shifts the labels itself


def build_hf(cfg: GPTConfig, like: GPT) -> HFCausalLM:
    """GPT2LMHeadModel with `cfg`'s shape, sdpa attention and `like`'s weights."""
    try:
        import transformers
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as exc:
        raise ConfigError("--against hf needs transformers: pip install transformers") from exc
    from lmtrain.model.hf import to_hf_state_dict

    transformers.logging.set_verbosity_error()  # its notes about the loss type are noise in a benchmark's output

    hf_cfg = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.d_ff, activation_function="gelu_new", resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, layer_norm_epsilon=cfg.layer_norm_eps,
        attn_implementation="sdpa",
    )  # fmt: skip
    model = GPT2LMHeadModel(hf_cfg)
    model.load_state_dict(to_hf_state_dict(like.state_dict(), include_head=True), strict=False)
    return HFCausalLM(model)


@dataclass
class _Side:
    """One model under test: its step function and the seconds of each timed step."""

    step: TrainStep
    seconds: list[float]
    taken: int = 0

    def run(self, n: int, device: torch.device, timed: bool = True) -> None:
        for _ in range(n):
            synchronize(device)
            t0 = time.perf_counter()
            self.step(self.taken)
            synchronize(device)
            if timed:
                self.seconds.append(time.perf_counter() - t0)
            self.taken += 1


def _train_step(
    model: nn.Module, b: TrainBench, tokens: np.ndarray, seed: int, world: World | None = None, parallel: str = "ddp"
) -> TrainStep:
    """The trainer's step for `model`: on one device, or as this rank of `world` (micro-batch b.batch_size each)."""
    world = world or World(device=b.device)
    runner = wrap_model(model, world, parallel, b.compile, b.dtype)  # type: ignore[arg-type]
    optimizer = build_optimizer(model, 1e-4, 0.1, (0.9, 0.95), b.device, b.optimizer)
    scaler = torch.amp.GradScaler(b.device.type, enabled=b.dtype == "fp16")
    schedule = ScheduleConfig(1e-4, 1e-4, 0, 1_000_000, "constant")
    sampler = TrainSampler(len(tokens), b.seq_len, b.batch_size * b.grad_accum * world.world_size, seed)
    return TrainStep(
        model, runner, optimizer, scaler, schedule, sampler, tokens, b.seq_len, b.grad_accum, 1.0, b.device, b.dtype,
        world=world,
    )  # fmt: skip


EVAL_BATCHES = 5


def random_tokens(b: TrainBench, seed: int = 0) -> np.ndarray:
    """Random tokens for four optimizer steps' distinct windows (the sampler reshuffles after that) and for the
    evaluation batches of `eval_throughput`."""
    n = (max(b.batch_size * b.grad_accum * 4, b.batch_size * EVAL_BATCHES) + 2) * b.seq_len
    return np.random.default_rng(seed).integers(0, b.model.vocab_size, n, dtype=np.int64).astype(np.uint16)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what they are): CUDA's peak allocation since the last reset, or this process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale), "process_peak_rss"


def _summary(seconds: list[float], tokens_per_step: int) -> dict[str, Any]:
    median = statistics.median(seconds)
    q = statistics.quantiles(seconds, n=4) if len(seconds) >= 4 else [min(seconds), median, max(seconds)]
    return {
        "tokens_per_s": round(tokens_per_step / median, 1),
        "step_ms": round(median * 1e3, 2),
        "step_ms_min": round(min(seconds) * 1e3, 2),
        "step_ms_max": round(max(seconds) * 1e3, 2),
        "step_ms_iqr": round((q[2] - q[0]) * 1e3, 2),
        "timed_steps": len(seconds),
    }


def eval_throughput(model: nn.Module, b: TrainBench, tokens: np.ndarray, batches: int = EVAL_BATCHES) -> float:
    """Tokens/s of the trainer's validation loss (`evaluate`, forward only) on batches of the micro-batch size."""
    starts = np.arange(b.batch_size * batches) * b.seq_len
    data = [make_batch(tokens, s, b.seq_len, b.device) for s in np.split(starts, batches)]
    evaluate(model, data[:1], lambda: autocast(b.device, b.dtype))  # warm-up
    synchronize(b.device)
    t0 = time.perf_counter()
    evaluate(model, data, lambda: autocast(b.device, b.dtype))
    synchronize(b.device)
    return b.batch_size * batches * b.seq_len / (time.perf_counter() - t0)


def profile_steps(side: _Side, device: torch.device, steps: int = 3, top: int = 15) -> list[dict[str, Any]]:
    """The `top` operators by self time (device time on a GPU) over `steps` optimizer steps, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        side.run(steps, device, timed=False)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:top]
    total = sum(getattr(e, key) for e in prof.key_averages()) or 1
    return [
        {
            "op": e.key,
            "self_ms_per_step": round(getattr(e, key) / 1e3 / steps, 3),
            "share": round(getattr(e, key) / total, 4),
        }
        for e in rows
    ]


def bench_train(
    b: TrainBench, peak: Peak, against_hf: bool = False, rounds: int = 2, profile: bool = False
) -> dict[str, Any]:
    """Time `b.steps` optimizer steps of lmtrain's GPT (and of transformers' model with `against_hf`)."""
    torch.manual_seed(0)
    tokens = random_tokens(b)
    if b.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.device)
    model = GPT(b.model, loss_impl=b.loss).to(b.device)
    sides = [_Side(_train_step(model, b, tokens, 0), [])]
    sides[0].run(b.warmup, b.device, timed=False)
    memory, memory_kind = peak_memory(b.device)
    hf_memory = None
    if against_hf:
        before = torch.cuda.memory_allocated(b.device) if b.device.type == "cuda" else 0
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        torch.manual_seed(0)
        hf = build_hf(b.model, GPT(b.model)).to(b.device)
        sides.append(_Side(_train_step(hf, dataclasses.replace(b, optimizer="adamw"), tokens, 0), []))
        sides[1].run(b.warmup, b.device, timed=False)
        hf_memory = peak_memory(b.device)[0] - before if b.device.type == "cuda" else None
    per_round = [b.steps // rounds + (1 if i < b.steps % rounds else 0) for i in range(rounds)]
    for n in per_round:
        for side in sides:
            side.run(n, b.device)
    fpt = flops_per_token(b.model, b.seq_len)
    ours = _summary(sides[0].seconds, b.tokens_per_step)
    result: dict[str, Any] = {
        "bench": "train",
        "parameters": param_counts(b.model)["total"],
        "batch_size": b.batch_size,
        "grad_accum": b.grad_accum,
        "seq_len": b.seq_len,
        "tokens_per_step": b.tokens_per_step,
        "dtype": b.dtype,
        "compile": b.compile,
        "loss": b.loss,
        "optimizer": b.optimizer,
        **ours,
        "flops_per_token": fpt,
        "tflops": round(ours["tokens_per_s"] * fpt / 1e12, 4),
        "peak_tflops_measured": round(peak.measured_flops / 1e12, 4),
        "peak_tflops_datasheet": round(peak.datasheet_flops / 1e12, 1) if peak.datasheet_flops else None,
        "mfu": round(peak.mfu(ours["tokens_per_s"], fpt), 4),
        "mfu_datasheet": round(mfu(ours["tokens_per_s"], fpt, peak.datasheet_flops), 4)
        if peak.datasheet_flops
        else None,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "eval_tokens_per_s": round(eval_throughput(model, b, tokens), 1),
    }
    result["eval_over_train"] = round(result["eval_tokens_per_s"] / ours["tokens_per_s"], 2)
    if profile:
        result["profile"] = profile_steps(sides[0], b.device)
    if against_hf:
        theirs = _summary(sides[1].seconds, b.tokens_per_step)
        result |= {f"hf_{k}": v for k, v in theirs.items()}
        result["hf_peak_memory_bytes"] = hf_memory
        result["speedup"] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3)
    return result


def _fits(b: TrainBench, batch: int, model: GPT) -> int | None:
    """Peak memory of one optimizer step at micro-batch `batch`, or None when it runs out of memory."""
    trial = dataclasses.replace(b, batch_size=batch, grad_accum=1, compile=False)
    if b.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(b.device)
    try:
        step = _train_step(model, trial, random_tokens(trial), 0)
        step(0)
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
    model = GPT(b.model, loss_impl=b.loss).to(b.device)
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
