"""Training failures: recognising them, and the one-line message that names what happened, what is kept and what to
try, by reason."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from lmtrain.config import RunConfig
from lmtrain.distributed.world import World, lost_peer, report_failure
from lmtrain.runtime import is_out_of_memory
from lmtrain.train.events import FailureReason


def _rank_failed(cfg: RunConfig) -> str:
    return (
        f"fix what stopped that rank (its own error is in its output) and continue; a rank waits at most "
        f"--dist-timeout {cfg.train.distributed.timeout:g} s for the others"
    )


def _non_finite(cfg: RunConfig) -> str:
    tc = cfg.train
    warmup = tc.schedule.warmup if tc.schedule.warmup is not None else "5% of the run"
    return (
        f"try a lower --lr (now {tc.optimizer.peak_lr:g}) or a longer --warmup (now {warmup}), keep --grad-clip "
        f"on, prefer --dtype bf16 or fp32 to fp16, or pass --on-nan skip to skip such steps"
    )


def _out_of_memory(cfg: RunConfig) -> str:
    tc = cfg.train
    return (
        f"lower --micro-batch-size (now {tc.micro}; gradients still add up to --batch-size {tc.batch_size}) "
        f"or --seq-len (now {cfg.seq_len}), or use --dtype bf16"
    )


ADVICE: Mapping[FailureReason, Callable[[RunConfig], str]] = MappingProxyType(
    {
        FailureReason.RANK_FAILED: _rank_failed,
        FailureReason.NON_FINITE: _non_finite,
        FailureReason.OUT_OF_MEMORY: _out_of_memory,
    }
)
"""What to try after each failure (every FailureReason has an entry; a test checks)."""


def failure_of(exc: Exception, *, world: World, step: int, waited_s: float) -> tuple[FailureReason, str]:
    """The failure `exc` stands for at `step` (after `waited_s` seconds of it), with what happened: another rank's
    failure (it failed first) or out of memory; any other exception is reported to the other ranks and raised as
    itself."""
    lost = lost_peer(world, exc, waited_s=waited_s)
    if lost is not None:
        return FailureReason.RANK_FAILED, f"rank {world.rank} stopped at step {step} because {lost}"
    if not is_out_of_memory(exc):
        report_failure(world, f"{type(exc).__name__}: {exc}")
        raise exc
    return FailureReason.OUT_OF_MEMORY, f"out of memory on {world.device} at step {step} ({str(exc).strip()[:200]})"


def failure_message(reason: FailureReason, what: str, cfg: RunConfig, out: Path, last: Path | None) -> str:
    """`what` happened; nothing was saved from it; the last good checkpoint (or none); what to try."""
    kept = (
        f"the last good checkpoint is {last} (continue from it with lmtrain train --resume {out})"
        if last
        else "no checkpoint was written yet"
    )
    return f"{what}; nothing was saved from that state; {kept}; {ADVICE[reason](cfg)}"
