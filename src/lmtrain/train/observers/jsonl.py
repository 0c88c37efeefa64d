"""metrics.jsonl: one JSON object per line for every logged step, evaluation, scoring of the benchmark tasks (also
kept in the run's tasks.json), checkpoint, warning, end or failure.

Every record has `event` and `step`. A resumed run first drops the records after the step it resumes from,
so the file reads as one run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lmtrain.files import write_text_atomic
from lmtrain.tasks.results import record_results
from lmtrain.train.events import (
    CheckpointSaved,
    Evaluated,
    Event,
    RunEnded,
    RunFailed,
    RunStarted,
    StepEnded,
    TasksScored,
    Warned,
    perplexity,
)

METRICS = "metrics.jsonl"


def _finite(x: float | None) -> float | str | None:
    """JSON has no NaN or infinity: non-finite numbers are written as the strings "nan", "inf", "-inf"."""
    if x is None or math.isfinite(x):
        return x
    return str(x)


def _rounded(x: float | None) -> float | None:
    return round(x, 4) if x is not None else None


def record(event: Event) -> dict[str, Any] | None:
    """The metrics.jsonl record of an event; None for steps that are not log points."""
    match event:
        case RunStarted(out=out, plan=plan, resumed_from=resumed):
            return {
                "event": "start",
                "step": plan.start_step,
                "run": str(out),
                "total_steps": plan.total_steps,
                "stop_at": plan.stop_at,
                "tokens_per_step": plan.tokens_per_step,
                "parameters": plan.parameters,
                "device": plan.device,
                "dtype": plan.dtype,
                "flops_per_token": plan.flops_per_token,
                "peak_flops": plan.peak_flops,
                "world_size": plan.world_size,
                "parallel": plan.parallel,
                "trained_share": plan.trained_share,
                "resumed_from": str(resumed) if resumed else None,
                "changes": list(event.changes),
                "findings": [f.to_dict() for f in event.findings],
            }
        case StepEnded(log_point=False):
            return None
        case StepEnded():
            return {
                "event": "step",
                "step": event.step,
                "epoch": round(event.epoch, 4),
                "tokens": event.tokens,
                "loss": _finite(event.loss),
                "lr": event.lr,
                "grad_norm": _finite(event.grad_norm),
                "step_time": round(event.step_time, 6),
                "tokens_per_s": round(event.tokens_per_s, 1),
                "mfu": _rounded(event.mfu),
                **({"skipped": True} if event.skipped else {}),
            }
        case Evaluated():
            return {
                "event": "eval",
                "step": event.step,
                "tokens": event.tokens,
                "val_loss": _finite(event.val_loss),
                "val_ppl": perplexity(event.val_loss),
                "seconds": round(event.seconds, 4),
            }
        case TasksScored(report=report):
            return {
                "event": "tasks",
                "step": event.step,
                "tokens": event.tokens,
                "core": report["core"],
                "core_label": report["core_label"],
                "chatcore": report.get("chatcore"),
                "chatcore_label": report.get("chatcore_label"),
                "accuracy": event.accuracies(),
                "centred": {name: t["centred"] for name, t in report["tasks"].items()},
                "max_per_task": report["max_per_task"],
                "seconds": round(event.seconds, 3),
            }
        case CheckpointSaved():
            return {
                "event": "checkpoint",
                "step": event.step,
                "path": str(event.path),
                "val_loss": _finite(event.val_loss),
                "best": event.is_best,
                "seconds": round(event.seconds, 4),
            }
        case Warned():
            return {"event": "warning", "step": event.step, "code": event.code, "message": event.message}
        case RunEnded():
            return {
                "event": "end",
                "step": event.step,
                "reason": event.reason,
                "exit_code": event.exit_code,
                "best_val_loss": event.best_val_loss,
                "best_checkpoint": str(event.best_checkpoint) if event.best_checkpoint else None,
                "train_seconds": round(event.train_seconds, 3),
                "tokens_per_s": round(event.tokens_per_s, 1) if event.tokens_per_s else None,
                "mfu": _rounded(event.mfu),
                "sample": event.sample,
            }
        case RunFailed():
            return {
                "event": "failed",
                "step": event.step,
                "reason": event.reason,
                "message": event.message,
                "last_checkpoint": str(event.last_checkpoint) if event.last_checkpoint else None,
            }
    return None


class JsonlObserver:
    """Appends the records of a run's events to RUN/metrics.jsonl, flushed line by line."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / METRICS
        self._file = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._open(event.plan.start_step if event.resumed_from is not None else None)
        if isinstance(event, TasksScored):  # the run's tasks.json, as `lmtrain eval --tasks` records it
            record_results(self.out, event.step, event.report | {"step": event.step, "tokens": event.tokens})
        rec = record(event)
        if rec is not None and self._file is not None:
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()

    def _open(self, resume_step: int | None) -> None:
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError, TypeError):
        return math.inf
