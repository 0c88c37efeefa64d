"""Timing training: whole optimizer steps with the trainer's own `TrainStep`, against transformers in one run (what
`lmtrain bench train` measures, `train.py`; the batch search, `batch.py`, and scaling, `scaling.py`, build on it).

Each side trains on random tokens: forward, backward, gradient clipping and fused AdamW, timed step by step after
warm-up (the device is synchronised around each step). The two models are timed in alternating rounds so a noisy
machine slows both alike. `--against hf` builds the transformers class the architecture exports to (GPT2LMHeadModel,
LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM; sdpa attention) with the same config
and weights and trains it through the same `TrainStep`, with the loss transformers computes for
`labels=input_ids` (as `run_clm.py` trains).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lmtrain.config import DataConfig, RunConfig
from lmtrain.data.loader import make_batch
from lmtrain.defaults import BENCH_LR
from lmtrain.distributed.world import World
from lmtrain.errors import ConfigError
from lmtrain.eval.loss import evaluate
from lmtrain.hardware import Peak, mfu
from lmtrain.model.base import CausalLM, ParamRoles
from lmtrain.model.config import LossImpl, ModelConfig
from lmtrain.model.registry import build_model, hf_adapter
from lmtrain.model.sizing import flops_per_token
from lmtrain.runtime import autocast, synchronize
from lmtrain.train.parts import build_training
from lmtrain.train.step import TrainStep
from lmtrain.train_config import (
    BatchLayout,
    DistributedConfig,
    LRScheduleConfig,
    OptimizerConfig,
    TrainConfig,
    batch_layout,
)

BENCH_STEPS = 1_000_000
"""The length of the run a benchmark's steps belong to (only the sampler's epochs depend on it)."""


@dataclass(frozen=True, kw_only=True)
class TrainBench:
    """What `lmtrain bench train` times; the batch flags mean what `lmtrain train`'s mean."""

    model: ModelConfig
    device: torch.device
    dtype: str
    batch_size: int
    """The global batch: sequences per optimizer step, over every rank."""
    micro_batch_size: int | None = None
    """Sequences per forward/backward (default: a rank's whole share of the batch, no accumulation)."""
    seq_len: int
    steps: int = 10
    """Timed steps per model (at least 10 for the median)."""
    warmup: int = 3
    compile: bool = False
    loss: LossImpl = "fused"
    optimizer: str = "adamw"
    """adamw, or muon (Muon for the block matrices at 3x the LR, AdamW for the rest), as `--optimizer`."""
    parallel: str = "ddp"
    """Under torchrun: ddp or fsdp."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.micro_batch_size is not None and self.micro_batch_size < 1) or self.warmup < 1:
            raise ConfigError("--batch-size, --micro-batch-size and --warmup-steps must be at least 1")
        if self.steps < 2:
            raise ConfigError("--steps must be at least 2")
        if not 1 <= self.seq_len <= self.model.max_seq_len:
            raise ConfigError(
                f"--seq-len {self.seq_len} must be between 1 and the model's max_seq_len={self.model.max_seq_len}"
            )

    def layout(self, world_size: int = 1) -> BatchLayout:
        """The batch over `world_size` ranks and their micro-batches (a ConfigError if it does not split)."""
        return batch_layout(self.batch_size, self.micro_batch_size, world_size)

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step over every rank."""
        return self.batch_size * self.seq_len

    def run_config(self) -> RunConfig:
        """The run whose steps are timed: this batch, a constant LR of BENCH_LR, the chosen optimizer."""
        train = TrainConfig(
            batch_size=self.batch_size,
            micro_batch_size=self.micro_batch_size,
            max_steps=BENCH_STEPS,
            compile=self.compile,
            optimizer=OptimizerConfig(name=self.optimizer, lr=BENCH_LR),  # type: ignore[arg-type]
            schedule=LRScheduleConfig(kind="constant", warmup=0),
            distributed=DistributedConfig(parallel=self.parallel),  # type: ignore[arg-type]
        )
        return RunConfig(preset="bench", model=self.model, data=DataConfig(seq_len=self.seq_len), train=train)


class HFCausalLM(nn.Module):
    """A transformers causal LM called the way `TrainStep` calls a model: (x, y) -> (None, loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.model(input_ids=x, labels=x).loss  # transformers shifts the labels itself

    def parameter_roles(self) -> ParamRoles:
        """AdamW's split for a foreign model: tensors of two or more dimensions decayed, the rest not."""
        params = [p for p in self.parameters() if p.requires_grad]
        return ParamRoles(
            matrices=[p for p in params if p.dim() >= 2], embeddings=[], vectors=[p for p in params if p.dim() < 2]
        )


def build_hf(cfg: ModelConfig, like: CausalLM) -> HFCausalLM:
    """The transformers model `cfg`'s architecture exports to (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM,
    Qwen3ForCausalLM) with `cfg`'s shape, sdpa attention and `like`'s weights."""
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as exc:
        raise ConfigError("--against hf needs transformers: pip install transformers") from exc

    transformers.logging.set_verbosity_error()  # its notes about the loss type are noise in a benchmark's output
    adapter = hf_adapter(cfg)
    fields = adapter.to_hf_config(cfg)
    hf_cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa")
    model.load_state_dict(adapter.to_hf_state_dict(like.state_dict(), cfg, include_head=True), strict=False)
    return HFCausalLM(model)


@dataclass
class Side:
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


def train_side(model: nn.Module, b: TrainBench, tokens: np.ndarray, world: World | None = None) -> Side:
    """The trainer's own step for `model` (built by `build_training`, as every run is), on one device or as this
    rank of `world`."""
    step = build_training(
        b.run_config(),
        tokens=tokens,
        device=b.device,
        dtype=b.dtype,
        world=world or World(device=b.device),
        model=model,
    )
    return Side(step, [])


EVAL_BATCHES = 5


def random_tokens(b: TrainBench, seed: int = 0) -> np.ndarray:
    """Random tokens for four optimizer steps' distinct windows (the sampler reshuffles after that) and for the
    evaluation batches of `eval_throughput`."""
    n = (max(b.batch_size * 4, b.layout().micro * EVAL_BATCHES) + 2) * b.seq_len
    return np.random.default_rng(seed).integers(0, b.model.vocab_size, n, dtype=np.int64).astype(np.uint16)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what they are): CUDA's peak allocation since the last reset, or this process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale), "process_peak_rss"


def summary(seconds: list[float], tokens_per_step: int) -> dict[str, Any]:
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
    micro = b.layout().micro
    starts = np.arange(micro * batches) * b.seq_len
    data = [make_batch(tokens, s, b.seq_len, b.device) for s in np.split(starts, batches)]
    evaluate(model, data[:1], lambda: autocast(b.device, b.dtype))  # warm-up
    synchronize(b.device)
    t0 = time.perf_counter()
    evaluate(model, data, lambda: autocast(b.device, b.dtype))
    synchronize(b.device)
    return micro * batches * b.seq_len / (time.perf_counter() - t0)


def profile_steps(side: Side, device: torch.device, steps: int = 3, top: int = 15) -> list[dict[str, Any]]:
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


def mfu_fields(tokens_per_s: float, flops_per_token: int, peak: Peak) -> dict[str, Any]:
    """The peak (measured and datasheet) and the MFU against each."""
    datasheet = peak.datasheet_flops
    return {
        "peak_tflops_measured": round(peak.measured_flops / 1e12, 4),
        "peak_measured_at": peak.measured_at,
        "peak_tflops_datasheet": round(datasheet / 1e12, 1) if datasheet else None,
        "mfu": round(peak.mfu(tokens_per_s, flops_per_token), 4),
        "mfu_datasheet": round(mfu(tokens_per_s, flops_per_token, datasheet), 4) if datasheet else None,
    }


def bench_train(
    b: TrainBench, peak: Peak, *, against_hf: bool = False, rounds: int = 2, profile: bool = False
) -> dict[str, Any]:
    """Time `b.steps` optimizer steps of lmtrain's model (and of transformers' model with `against_hf`)."""
    torch.manual_seed(0)
    tokens = random_tokens(b)
    if b.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.device)
    model = build_model(b.model, loss_impl=b.loss).to(b.device)
    sides = [train_side(model, b, tokens)]
    sides[0].run(b.warmup, b.device, timed=False)
    memory, memory_kind = peak_memory(b.device)
    hf_memory = None
    if against_hf:
        before = torch.cuda.memory_allocated(b.device) if b.device.type == "cuda" else 0
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        torch.manual_seed(0)
        hf = build_hf(b.model, build_model(b.model)).to(b.device)
        sides.append(train_side(hf, dataclasses.replace(b, optimizer="adamw"), tokens))
        sides[1].run(b.warmup, b.device, timed=False)
        hf_memory = peak_memory(b.device)[0] - before if b.device.type == "cuda" else None
    per_round = [b.steps // rounds + (1 if i < b.steps % rounds else 0) for i in range(rounds)]
    for n in per_round:
        for side in sides:
            side.run(n, b.device)
    fpt = flops_per_token(b.model, b.seq_len)
    ours = summary(sides[0].seconds, b.tokens_per_step)
    layout = b.layout()
    result: dict[str, Any] = {
        "bench": "train",
        "parameters": b.model.param_counts()["total"],
        "batch_size": b.batch_size,
        "micro_batch_size": layout.micro,
        "accumulation": layout.accumulation,
        "seq_len": b.seq_len,
        "tokens_per_step": b.tokens_per_step,
        "dtype": b.dtype,
        "compile": b.compile,
        "loss": b.loss,
        "optimizer": b.optimizer,
        **ours,
        "flops_per_token": fpt,
        "tflops": round(ours["tokens_per_s"] * fpt / 1e12, 4),
        **mfu_fields(ours["tokens_per_s"], fpt, peak),
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "eval_tokens_per_s": round(eval_throughput(model, b, tokens), 1),
    }
    result["eval_over_train"] = round(result["eval_tokens_per_s"] / ours["tokens_per_s"], 2)
    if profile:
        result["profile"] = profile_steps(sides[0], b.device)
    if against_hf:
        theirs = summary(sides[1].seconds, b.tokens_per_step)
        result |= {f"hf_{k}": v for k, v in theirs.items()}
        result["hf_peak_memory_bytes"] = hf_memory
        result["speedup"] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3)
    return result
