"""A run folder read back for reports: its config and the records of metrics.jsonl, finished, running or failed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmtrain.config import RUN_CONFIG
from lmtrain.errors import ConfigError
from lmtrain.tasks.results import read_results
from lmtrain.train.events import EndReason
from lmtrain.train.observers.jsonl import METRICS


@dataclass
class RunData:
    """What a run folder says about its run."""

    folder: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    starts: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    """The last `end` or `failed` record, if it came after the last start."""
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The benchmark scores of tasks.json by step (during training and from `lmtrain eval --tasks`)."""

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def status(self) -> str:
        """finished, stopped (at --stop-at or by a signal), failed, or running (or killed: no end record)."""
        if self.outcome is None:
            return "running"
        if self.outcome["event"] == "failed":
            return "failed"
        return "finished" if self.outcome.get("reason") in (EndReason.FINISHED, EndReason.ALREADY_DONE) else "stopped"

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The doctor's findings at the latest start."""
        return self.starts[-1].get("findings", []) if self.starts else []

    @property
    def tokens_per_step(self) -> int:
        if self.starts:
            return int(self.starts[-1]["tokens_per_step"])
        train = self.config.get("train", {})
        seq = self.config.get("data", {}).get("seq_len") or self.config.get("model", {}).get("max_seq_len", 0)
        return int(train.get("batch_size", 0)) * int(seq)

    def tokens(self, record: dict[str, Any]) -> int:
        """Training tokens seen at a record's step."""
        return int(record.get("tokens", record["step"] * self.tokens_per_step))

    def task_points(self) -> list[tuple[int, dict[str, Any]]]:
        """(training tokens, entry) of every scoring of the benchmark tasks, in step order."""
        return [(int(e.get("tokens") or step * self.tokens_per_step), e) for step, e in sorted(self.tasks.items())]

    def core_points(self) -> list[tuple[int, float]]:
        """(training tokens, CORE) of every scoring that covered a CORE task, in step order."""
        return [(x, e["core"]) for x, e in self.task_points() if e.get("core") is not None]

    def best_eval(self) -> dict[str, Any] | None:
        finite = [e for e in self.evals if _number(e.get("val_loss")) is not None]
        return min(finite, key=lambda e: e["val_loss"]) if finite else None


def _number(value: Any) -> float | None:
    """A finite float, or None (metrics.jsonl writes NaN and infinity as strings)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def value(record: dict[str, Any], key: str) -> float:
    """A record's number, NaN where it is missing or not finite."""
    number = _number(record.get(key))
    return math.nan if number is None else number


def _parse(lines: list[str]) -> list[dict[str, Any]]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written while the run goes on
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def _kind(record: dict[str, Any]) -> str:
    """The record's event (lmtrain 0.1 runs wrote steps and evaluations without `event`)."""
    if "event" in record:
        return str(record["event"])
    return "eval" if "val_loss" in record else "step"


def read_run(folder: Path) -> RunData:
    """The run in `folder`; a folder that is not a run, or a run without metrics yet, is a ConfigError."""
    if not (folder / RUN_CONFIG).is_file():
        what = "does not exist" if not folder.exists() else f"is not a run folder (it has no {RUN_CONFIG})"
        raise ConfigError(f"{folder} {what}; give a folder that lmtrain train --out wrote")
    try:
        config = json.loads((folder / RUN_CONFIG).read_text())
        lines = (folder / METRICS).read_text().splitlines() if (folder / METRICS).is_file() else []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: cannot read the run ({exc})") from None
    records = _parse(lines)
    run = RunData(folder, config, records, tasks=read_results(folder))
    for record in records:
        kind = _kind(record)
        if kind == "start":
            run.starts.append(record)
            run.outcome = None
        elif kind in ("end", "failed"):
            run.outcome = record
        else:
            bucket = {"step": run.steps, "eval": run.evals, "checkpoint": run.checkpoints, "warning": run.warnings}
            bucket.get(kind, []).append(record)
    if not run.steps and not run.evals:
        raise ConfigError(
            f"{folder} has no metrics yet ({METRICS} has no training step); wait for the first logged step, "
            f"or train with --log including jsonl"
        )
    return run
