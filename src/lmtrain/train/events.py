"""What a training run announces: small frozen records, and the bus that hands each one to every observer.

Observers receive events and nothing else: no trainer, no model, no optimizer, so they cannot change the loop.
An observer may announce events of its own (the health checks announce warnings) through the callable it was
given. Adding an observer changes no line of the trainer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from lmtrain.config import RunConfig
from lmtrain.findings import Finding
from lmtrain.hardware import mfu


class Reason(str, Enum):
    """A closed set of reasons (a typo is an AttributeError, not a silently different branch); each is its value in
    JSON, in logs and in messages."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class EndReason(Reason):
    """Why a run stopped normally."""

    FINISHED = "finished"
    STOP_AT = "stop_at"
    SIGNAL = "signal"
    ALREADY_DONE = "already_done"


class FailureReason(Reason):
    """Why a run failed (each has its advice in `failures.py`)."""

    NON_FINITE = "non_finite"
    OUT_OF_MEMORY = "out_of_memory"
    RANK_FAILED = "rank_failed"
    """Another rank failed first, under torchrun."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The run as planned at its start."""

    total_steps: int
    """Optimizer steps of the whole run (the schedule spans them)."""
    stop_at: int
    """The step this invocation stops at (--stop-at, else total_steps)."""
    start_step: int
    """Steps already taken (0 for a new run, the checkpoint's step on resume)."""
    tokens_per_step: int
    """Tokens per optimizer step (global batch x seq_len)."""
    parameters: int
    """Every parameter, the tied embedding once."""
    non_embedding_parameters: int
    """Parameters outside the token and position embeddings."""
    train_tokens: int
    """Tokens in the training split."""
    valid_tokens: int
    """Tokens in the validation split."""
    steps_per_epoch: int
    """Optimizer steps per pass over the training windows."""
    eval_windows: int
    """Validation windows each evaluation scores (the same ones every time)."""
    device: str
    """Device the run trains on."""
    dtype: str
    """Autocast precision."""
    flops_per_token: int = 0
    """Training FLOPs per token at the run's context (6N + 12·L·d·T, as `lmtrain presets` prints)."""
    peak_flops: float | None = None
    """One device's measured peak matmul FLOP/s in the run's dtype (None when not measured)."""
    world_size: int = 1
    """Processes (devices) training together."""
    trained_share: float | None = None
    """--dataset chat: the share of the training split's tokens the loss trains (assistant replies and their end of
    turn); tokens/s and MFU count every token computed. None: plain text, where every token is trained."""
    parallel: str = "single"
    """single (one process), ddp or fsdp."""

    @property
    def total_tokens(self) -> int:
        """Training tokens over the whole run."""
        return self.total_steps * self.tokens_per_step

    def mfu(self, tokens_per_s: float | None) -> float | None:
        """Model FLOPs utilisation of a throughput over all ranks: tokens/s x FLOPs per token / (the measured peak x
        the devices)."""
        if not tokens_per_s or not self.peak_flops or not self.flops_per_token:
            return None
        return mfu(tokens_per_s, self.flops_per_token, self.peak_flops * self.world_size)


@dataclass(frozen=True, kw_only=True)
class RunStarted:
    """Training is about to take its first step (of a new or resumed run)."""

    out: Path
    config: RunConfig
    plan: Plan
    resumed_from: Path | None = None
    changes: tuple[str, ...] = ()
    """Settings a resumed run changed, one line each."""
    findings: tuple[Finding, ...] = ()
    """The doctor's findings (empty with --doctor off)."""


@dataclass(frozen=True, kw_only=True)
class StepEnded:
    """One optimizer step, announced in order at the next log, evaluation or checkpoint point."""

    step: int
    """Optimizer steps taken (1 after the first)."""
    epoch: float
    loss: float
    """Mean training loss of the step's global batch."""
    lr: float
    grad_norm: float
    """Global gradient norm before clipping."""
    tokens: int
    """Training tokens seen after this step."""
    step_time: float
    """Seconds per step over the interval this step was timed in (training only: no evaluation or saving)."""
    tokens_per_s: float
    """Training throughput over that interval."""
    log_point: bool
    """A step the logs show (every --log-every steps, the first and the last)."""
    skipped: bool = False
    """The update was skipped (--on-nan skip)."""
    mfu: float | None = None
    """Model FLOPs utilisation of `tokens_per_s` (Plan.mfu)."""


@dataclass(frozen=True)
class Evaluated:
    """The validation loss over the run's fixed validation windows."""

    step: int
    tokens: int
    val_loss: float
    seconds: float


@dataclass(frozen=True, kw_only=True)
class TasksScored:
    """The benchmark tasks scored on the weights the run keeps (`tasks.evaluate.TasksReport.to_json`)."""

    step: int
    tokens: int
    report: dict[str, Any]
    """core, core_label, core_tasks, chatcore, chatcore_label, chatcore_tasks, bos, max_per_task, seconds, and per
    task its figures."""
    seconds: float

    def accuracies(self) -> dict[str, float]:
        """Each task's accuracy, by name."""
        return {name: t["accuracy"] for name, t in self.report["tasks"].items()}


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint folder is complete and `latest` names it."""

    step: int
    path: Path
    val_loss: float | None
    is_best: bool
    seconds: float


@dataclass(frozen=True)
class Warned:
    """Something a person should look at; the run goes on."""

    step: int
    code: str
    """Short stable name, e.g. `health.grad_spike` or `doctor.warmup`."""
    message: str


@dataclass(frozen=True, kw_only=True)
class RunEnded:
    """The run stopped normally: finished, at --stop-at, or on a signal."""

    step: int
    reason: EndReason
    exit_code: int
    best_val_loss: float | None
    best_checkpoint: Path | None
    train_seconds: float
    """Seconds spent in training steps (not evaluation or checkpoints), the first step excluded."""
    tokens_per_s: float | None
    """Training throughput over those seconds."""
    sample: str | None = None
    mfu: float | None = None
    """Model FLOPs utilisation of `tokens_per_s` (Plan.mfu)."""


@dataclass(frozen=True)
class RunFailed:
    """The run stopped on a failure; no checkpoint was written from the failed state."""

    step: int
    reason: FailureReason
    message: str
    last_checkpoint: Path | None


def scalars(event: StepEnded | Evaluated | TasksScored) -> dict[str, float]:
    """The scalars every metrics sink (TensorBoard, W&B) records for a logged step, an evaluation or a scoring of
    the benchmark tasks, by name."""
    if isinstance(event, TasksScored):
        found = {f"tasks/{name}": acc for name, acc in event.accuracies().items()}
        figures = {m: event.report.get(m) for m in ("core", "chatcore")}
        return found | {f"tasks/{m}": v for m, v in figures.items() if v is not None}
    if isinstance(event, Evaluated):
        ppl = perplexity(event.val_loss)
        return {"val/loss": event.val_loss, **({"val/ppl": ppl} if ppl is not None else {})}
    found = {
        "train/loss": event.loss,
        "train/lr": event.lr,
        "train/grad_norm": event.grad_norm,
        "train/tokens_per_s": event.tokens_per_s,
        "train/tokens": float(event.tokens),
    }
    return found | ({"train/mfu": event.mfu} if event.mfu is not None else {})


def perplexity(loss: float) -> float | None:
    """exp(loss), the perplexity of a mean loss per token; None where the loss is not finite or exp would overflow."""
    return math.exp(loss) if math.isfinite(loss) and loss < 700 else None


Event = RunStarted | StepEnded | Evaluated | TasksScored | CheckpointSaved | Warned | RunEnded | RunFailed


class Observer(Protocol):
    """Anything that reacts to events: `on_event` for each, `close` at the end of the run."""

    def on_event(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass
class EventBus:
    """Hands every event to every observer, in order; events announced while one is handled queue behind it.

    An observer that raises is switched off with a warning (a full disk under TensorBoard must not end a run).
    """

    observers: list[Any] = field(default_factory=list)
    _queue: deque = field(default_factory=deque)
    _busy: bool = False

    def add(self, observer: Observer) -> None:
        """Subscribe `observer` to every later event."""
        self.observers.append(observer)

    def publish(self, event: Event) -> None:
        """Announce `event` to all observers (after any event being handled now)."""
        self._queue.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                current = self._queue.popleft()
                for observer in list(self.observers):
                    self._deliver(observer, current)
        finally:
            self._busy = False

    def _deliver(self, observer: Observer, event: Event) -> None:
        try:
            observer.on_event(event)
        except Exception as exc:  # an observer's own failure, whatever its type
            self.observers.remove(observer)
            step = getattr(event, "step", 0)
            name = type(observer).__name__
            self._queue.append(Warned(step, "observer.failed", f"{name} failed ({exc!r}); it is off for the run"))

    def close(self) -> None:
        """Close every observer (flushing files, ending the progress bar)."""
        for observer in self.observers:
            observer.close()
