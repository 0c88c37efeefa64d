"""Training failures: recognising them, and the one-line message that names the step, what is kept, what to try."""

from __future__ import annotations

from pathlib import Path

import torch

from lmtrain.config import RunConfig


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU or CPU allocation failure (the CPU allocator raises a plain RuntimeError)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def failure_message(reason: str, what: str, cfg: RunConfig, out: Path, last: Path | None) -> str:
    """`what` happened; nothing was saved from it; the last good checkpoint (or none); what to try."""
    kept = (
        f"the last good checkpoint is {last} (continue from it with lmtrain train --resume {out})"
        if last
        else "no checkpoint was written yet"
    )
    tc = cfg.train
    if reason == "rank_failed":
        advice = (
            f"fix what stopped that rank (its own error is in its output) and continue; a rank waits at most "
            f"--dist-timeout {tc.distributed.timeout:g} s for the others"
        )
    elif reason == "non_finite":
        warmup = tc.schedule.warmup if tc.schedule.warmup is not None else "5% of the run"
        advice = (
            f"try a lower --lr (now {tc.optimizer.peak_lr:g}) or a longer --warmup (now {warmup}), keep --grad-clip "
            f"on, prefer --dtype bf16 or fp32 to fp16, or pass --on-nan skip to skip such steps"
        )
    else:
        advice = (
            f"lower --micro-batch-size (now {tc.micro}; gradients still add up to --batch-size {tc.batch_size}) "
            f"or --seq-len (now {cfg.seq_len}), or use --dtype bf16"
        )
    return f"{what}; nothing was saved from that state; {kept}; {advice}"
