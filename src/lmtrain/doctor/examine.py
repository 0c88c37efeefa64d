"""The facts the doctor's rules need, from a run's config, its data and one measured step on its device.

`examine` gathers the facts (document lengths, device memory, a trial step on a throwaway copy of the model
with every RNG restored afterwards, so the run itself is unchanged) and applies the rules of `doctor.rules`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmtrain.config import RunConfig
from lmtrain.data.shards import TokenStream
from lmtrain.data.tokenizers.gpt2 import EOT_ID
from lmtrain.distributed.world import World
from lmtrain.doctor.chat_rules import conversation_stats
from lmtrain.doctor.rules import DocumentStats, Facts, Trial, diagnose, memory_estimate
from lmtrain.errors import ConfigError
from lmtrain.findings import Finding
from lmtrain.model.config import ModelConfig
from lmtrain.runtime import (
    autocast,
    device_memory,
    is_out_of_memory,
    preserved_rng,
    seed_everything,
    select_device,
    select_dtype,
)
from lmtrain.train.data import TrainingData, run_steps
from lmtrain.train.feed import ChatFeed
from lmtrain.train.parts import build_training

if TYPE_CHECKING:
    from lmtrain.tasks.evaluate import LoadedTask


@dataclass(frozen=True)
class DoctorReport:
    """The findings, and the facts behind them that a report or --json shows."""

    findings: list[Finding]
    facts: Facts

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "ERROR"]

    def to_dict(self) -> dict:
        """The --json form."""
        trial = self.facts.trial
        return {
            "findings": [f.to_dict() for f in self.findings],
            "plan": {
                "total_steps": self.facts.total_steps,
                "start_step": self.facts.start_step,
                "train_tokens": self.facts.train_tokens,
                "eval_windows": self.facts.eval_windows,
                "device": self.facts.device,
                "dtype": self.facts.dtype,
                "device_memory": self.facts.device_memory,
            },
            "documents": vars(self.facts.documents) if self.facts.documents is not None else None,
            "conversations": vars(self.facts.conversations) if self.facts.conversations is not None else None,
            "measured": vars(trial) if trial else None,
        }


def document_stats(tokens: np.ndarray | TokenStream, seq_len: int, eot_id: int = EOT_ID) -> DocumentStats:
    """Document lengths in a packed token stream (documents end at the end-of-document id `eot_id`)."""
    ends = np.flatnonzero(np.asarray(tokens) == eot_id)
    bounds = np.concatenate([[-1], ends, [len(tokens)]])
    lengths = np.diff(bounds) - 1
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        return DocumentStats(0, 0.0, 0.0)
    return DocumentStats(len(lengths), float(np.median(lengths)), float(np.mean(lengths > seq_len)))


def trial_step(
    cfg: RunConfig,
    data: TrainingData,
    device: torch.device,
    dtype: str,
    world_size: int = 1,
    *,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> Trial:
    """One optimizer step of one rank's share of the run's first batch on a fresh copy of the model (holding
    `weights` where given: --init-from's), timed after a short warm-up (under torchrun every rank takes such a share
    at once)."""
    with preserved_rng():
        seed_everything(cfg.train.seed)
        try:
            return _timed_step(cfg, data, device, dtype, world_size=world_size, weights=weights)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return Trial(math.nan, math.nan, None, out_of_memory=True)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _timed_step(
    cfg: RunConfig,
    data: TrainingData,
    device: torch.device,
    dtype: str,
    *,
    world_size: int,
    weights: Mapping[str, torch.Tensor] | None,
) -> Trial:
    tc = cfg.train
    one_rank = dataclasses.replace(tc, batch_size=tc.layout(world_size).per_rank, compile=False)
    one_rank_cfg = dataclasses.replace(cfg, train=one_rank)
    step = build_training(one_rank_cfg, feed=data.feed(one_rank_cfg), device=device, dtype=dtype, weights=weights)
    model = step.model
    model.train()
    first = step.feed.step_batches(0, world=World(device=device), accumulation=1, device=device).batches[0]
    with autocast(device, dtype):
        _, loss = model(first.x, first.y, **first.inputs())  # warm-up on step 0's batch: kernels, allocator
    loss.backward()
    step.optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    initial = float(step(0).loss)  # waits for the device
    seconds = time.perf_counter() - t0
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return Trial(seconds, initial, peak)


def examine(
    cfg: RunConfig,
    data: TrainingData,
    *,
    start_step: int = 0,
    measure: bool = True,
    world_size: int = 1,
    tasks: Sequence[LoadedTask] = (),
    weights: Mapping[str, torch.Tensor] | None = None,
) -> DoctorReport:
    """The doctor's report for `cfg` on `data` (with a measured step unless `measure` is False), for a run of
    `world_size` processes that scores `tasks` on the way and starts from `weights` (--init-from's) where given."""
    device = select_device(cfg.train.device)
    dtype = select_dtype(cfg.train.dtype, device)
    feed = data.feed(cfg)
    total = run_steps(cfg, feed.steps_per_epoch)
    cpu_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    memory = device_memory(device)
    facts = Facts(
        cfg=cfg,
        total_steps=total,
        start_step=start_step,
        train_tokens=len(data.train),
        eval_windows=feed.eval_windows,
        documents=document_stats(data.train, cfg.seq_len, data.tokenizer.eot_id) if data.chat is None else None,
        conversations=conversation_stats(feed) if isinstance(feed, ChatFeed) else None,
        device=str(device),
        dtype=dtype,
        device_memory=memory,
        cpu_has_bf16=bool(cpu_bf16),
        world_size=world_size,
        tasks_tokens=_scoring_tokens(tasks, data, cfg.model),
    )
    if measure and (memory is None or memory_estimate(facts) <= memory):  # never try a step that cannot fit
        facts = dataclasses.replace(facts, trial=trial_step(cfg, data, device, dtype, world_size, weights=weights))
    return DoctorReport(diagnose(facts), facts)


def preflight(
    cfg: RunConfig,
    data: TrainingData,
    *,
    start_step: int = 0,
    world_size: int = 1,
    tasks: Sequence[LoadedTask] = (),
    weights: Mapping[str, torch.Tensor] | None = None,
) -> tuple[Finding, ...]:
    """The doctor at the start of `lmtrain train` (of `world_size` processes), as --doctor asks: no findings (off),
    its findings (warn), or a ConfigError naming the first ERROR (strict)."""
    mode = cfg.train.health.doctor
    if mode == "off":
        return ()
    report = examine(cfg, data, start_step=start_step, world_size=world_size, tasks=tasks, weights=weights)
    if mode == "strict" and report.errors:
        first = report.errors[0]
        raise ConfigError(
            f"the doctor found {len(report.errors)} ERROR(s), so --doctor strict does not start the run: "
            f"[{first.code}] {first.message}"
        )
    return tuple(report.findings)


def _scoring_tokens(tasks: Sequence[LoadedTask], data: TrainingData, model: ModelConfig) -> int:
    """Tokens one scoring of `tasks` runs through the model (0 without tasks)."""
    from lmtrain.tasks.evaluate import scoring_tokens

    return scoring_tokens(tasks, data.tokenizer, model.max_seq_len, model.d_model) if tasks else 0
