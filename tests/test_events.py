"""The event bus and the observers: metrics.jsonl records, console lines, the progress bar, TensorBoard, W&B."""

from __future__ import annotations

import io
import json
import math
import sys
import types
from pathlib import Path

import pytest

from conftest import Recorder, make_plan, make_step
from lmtrain.config import build_run_config
from lmtrain.errors import ConfigError
from lmtrain.findings import Finding
from lmtrain.train.events import (
    CheckpointSaved,
    Evaluated,
    EventBus,
    RunEnded,
    RunFailed,
    RunStarted,
    StepEnded,
    Warned,
)
from lmtrain.train.observers import build_bus
from lmtrain.train.observers.console import PlainConsole, ProgressConsole
from lmtrain.train.observers.jsonl import JsonlObserver, record
from lmtrain.train.observers.tensorboard import TensorBoardObserver

CFG = build_run_config({"preset": "micro", "max_steps": 4, "warmup": 1})
PLAN = make_plan(4, parameters=3_320_640, non_embedding_parameters=100_096)


def _start(out: Path, **kw) -> RunStarted:
    return RunStarted(out=out, config=CFG, plan=PLAN, **kw)


def _step(step: int, loss: float = 5.0, log_point: bool = True, grad_norm: float = 1.0, **kw) -> StepEnded:
    return make_step(step, loss, grad_norm=grad_norm, log_point=log_point, **kw)


def _run_events(out: Path) -> list:
    return [
        _start(out, findings=(Finding("WARN", "warmup", "long warmup"),)),
        _step(1, 10.8),
        _step(2, 9.0, log_point=False),
        _step(3, 8.0),
        Evaluated(3, 768, 8.5, 0.25),
        CheckpointSaved(3, out / "checkpoints" / "step_0000003", 8.5, True, 0.5),
        Warned(3, "health.grad_spike", "a spike"),
        _step(4, 7.5),
        RunEnded(
            step=4,
            reason="finished",
            exit_code=0,
            best_val_loss=8.5,
            best_checkpoint=out / "checkpoints" / "step_0000003",
            train_seconds=1.5,
            tokens_per_s=512.0,
            sample="some text",
        ),
    ]


def test_the_bus_delivers_in_order_and_queues_events_announced_while_handling_one(tmp_path: Path) -> None:
    bus = EventBus()
    first, last = Recorder(), Recorder()

    class Echo:
        def on_event(self, event) -> None:
            if isinstance(event, StepEnded):
                bus.publish(Warned(event.step, "echo", "from an observer"))

        def close(self) -> None:
            pass

    for observer in (first, Echo(), last):
        bus.add(observer)
    bus.publish(_step(1))
    bus.publish(_step(2))
    kinds = [(type(e).__name__, e.step) for e in last.events]
    assert kinds == [("StepEnded", 1), ("Warned", 1), ("StepEnded", 2), ("Warned", 2)]
    assert first.events == last.events  # every observer sees the same sequence
    bus.close()
    assert first.closed and last.closed


def test_an_observer_that_raises_is_switched_off_with_a_warning() -> None:
    bus = EventBus()
    seen = Recorder()

    class Broken:
        def on_event(self, event) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    bus.add(Broken())
    bus.add(seen)
    bus.publish(_step(1))
    bus.publish(_step(2))
    warnings = [e for e in seen.events if isinstance(e, Warned)]
    assert len(warnings) == 1 and warnings[0].code == "observer.failed" and "disk full" in warnings[0].message
    assert [e.step for e in seen.events if isinstance(e, StepEnded)] == [1, 2]


def test_metrics_jsonl_has_a_record_per_logged_event(tmp_path: Path) -> None:
    observer = JsonlObserver(tmp_path)
    for event in _run_events(tmp_path):
        observer.on_event(event)
    observer.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in records] == [
        ("start", 0),
        ("step", 1),
        ("step", 3),  # step 2 is not a log point
        ("eval", 3),
        ("checkpoint", 3),
        ("warning", 3),
        ("step", 4),
        ("end", 4),
    ]
    assert records[0]["findings"] == [{"level": "WARN", "code": "warmup", "message": "long warmup"}]
    assert records[3]["val_ppl"] == pytest.approx(math.exp(8.5)) and records[3]["seconds"] == 0.25
    assert records[4]["best"] is True and records[4]["seconds"] == 0.5
    assert records[-1]["sample"] == "some text" and records[-1]["tokens_per_s"] == 512.0


def test_non_finite_values_are_valid_json() -> None:
    rec = record(Evaluated(2, 10, math.nan, 0.1))
    assert rec["val_loss"] == "nan" and rec["val_ppl"] is None
    json.loads(json.dumps(rec, allow_nan=False))
    failed = record(RunFailed(2, "non_finite", "bad", None))
    assert failed["event"] == "failed" and failed["last_checkpoint"] is None


def test_plain_console_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    console = PlainConsole(lines.append)
    for event in _run_events(tmp_path):
        console.on_event(event)
    text = "\n".join(lines)
    assert f"run      {tmp_path}" in text and "doctor   WARN  warmup  long warmup" in text
    assert "step 1/4 | epoch" in text and "step 2/4" not in text and "step 3/4" in text
    assert "step 3 | val loss 8.5000" in text and "checkpoint " in text and "(best)" in text
    assert "warning [health.grad_spike] step 3: a spike" in text
    assert "done: 4 steps; best val loss 8.5000" in text and "sample: 'some text'" in text


def test_progress_bar_shows_loss_lr_throughput_and_eta(tmp_path: Path) -> None:
    from rich.console import Console

    stream = io.StringIO()
    bar = ProgressConsole(Console(file=stream, force_terminal=True, width=160), lines=True)
    for event in _run_events(tmp_path):
        bar.on_event(event)
    bar.close()
    text = stream.getvalue()
    assert "4/4" in text and "loss 7.5000" in text and "lr 1.00e-03" in text and "25,600 tok/s" in text
    assert "val loss 8.5000" in text and "warning [health.grad_spike]" in text  # the other lines, above the bar


def test_build_bus_picks_plain_lines_off_a_terminal_and_the_bar_on_one(tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = build_bus(CFG.train, tmp_path, stdout=io.StringIO(), stderr=io.StringIO())
    assert any(isinstance(o, PlainConsole) for o in plain.observers)
    assert not any(isinstance(o, ProgressConsole) for o in plain.observers)
    out, err = io.StringIO(), Tty()
    bar = build_bus(CFG.train, tmp_path, stdout=out, stderr=err)
    assert any(isinstance(o, ProgressConsole) for o in bar.observers)
    assert any(isinstance(o, PlainConsole) for o in bar.observers)  # stdout is a file: it still gets the lines
    names = {type(o).__name__ for o in bar.observers}
    assert {"JsonlObserver", "TensorBoardObserver", "HealthMonitor"} <= names


def test_tensorboard_event_files_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    observer = TensorBoardObserver(tmp_path)
    for event in _run_events(tmp_path):
        observer.on_event(event)
    observer.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss", "val/ppl"} <= scalars
    assert [(s.step, round(s.value, 4)) for s in acc.Scalars("train/loss")] == [(1, 10.8), (3, 8.0), (4, 7.5)]
    assert [(s.step, s.value) for s in acc.Scalars("val/loss")] == [(3, 8.5)]
    assert {"run/config/text_summary", "run/warnings/text_summary"} <= set(acc.Tags()["tensors"])


def test_wandb_is_an_error_when_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    cfg = build_run_config({"preset": "micro", "log": "jsonl,wandb"})
    with pytest.raises(ConfigError, match="wandb package is not installed; pip install wandb"):
        build_bus(cfg.train, tmp_path)


def test_wandb_gets_the_scalars_and_the_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[tuple[dict, int]] = []
    runs: list = []

    class FakeRun:
        def __init__(self, **kwargs) -> None:
            self.kwargs, self.summary, self.exit_code = kwargs, {}, None
            runs.append(self)

        def log(self, data: dict, step: int) -> None:
            logged.append((data, step))

        def finish(self, exit_code: int = 0) -> None:
            self.exit_code = exit_code

    fake = types.SimpleNamespace(init=lambda **kw: FakeRun(**kw), util=types.SimpleNamespace(generate_id=lambda: "abc"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = build_run_config({"preset": "micro", "log": "wandb", "max_steps": 4, "warmup": 1})
    bus = build_bus(cfg.train, tmp_path, stdout=io.StringIO(), stderr=io.StringIO(), wandb_project="proj")
    for event in _run_events(tmp_path):
        bus.publish(event)
    bus.close()
    (run,) = runs
    assert run.kwargs["project"] == "proj" and run.kwargs["id"] == "abc" and run.kwargs["resume"] == "allow"
    assert (tmp_path / "wandb_id").read_text().strip() == "abc"
    assert [step for data, step in logged if "train/loss" in data] == [1, 3, 4]
    assert ({"val/loss": 8.5, "val/ppl": pytest.approx(math.exp(8.5))}, 3) in logged
    assert run.summary["warnings"] == 1 and run.summary["outcome"] == "finished" and run.exit_code == 0
    observer = TensorBoardObserver(tmp_path / "tb")  # both sinks record the same scalars
    for event in _run_events(tmp_path):
        observer.on_event(event)
    observer.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {name for data, _ in logged for name in data}
