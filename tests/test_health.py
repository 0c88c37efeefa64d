"""The health checks during training, one test per rule, on synthetic events."""

from __future__ import annotations

import math
from pathlib import Path

from conftest import make_plan, make_step
from lmtrain.config import build_run_config
from lmtrain.train.events import CheckpointSaved, Evaluated, RunStarted, StepEnded, Warned
from lmtrain.train.observers.health import HealthMonitor

LN_V = math.log(50257)


def _monitor(total_steps: int = 1000, start_step: int = 0) -> tuple[HealthMonitor, list[Warned]]:
    warnings: list[Warned] = []
    monitor = HealthMonitor(warnings.append)
    cfg = build_run_config({"preset": "micro"})
    plan = make_plan(total_steps, start_step)
    monitor.on_event(RunStarted(out=Path("run"), config=cfg, plan=plan))
    return monitor, warnings


def _step(step: int, loss: float, grad_norm: float = 1.0) -> StepEnded:
    return make_step(step, loss, grad_norm=grad_norm)


def _codes(warnings: list[Warned]) -> list[str]:
    return [w.code for w in warnings]


def test_initial_loss_far_from_ln_v_warns() -> None:
    monitor, warnings = _monitor()
    monitor.on_event(_step(1, LN_V + 0.3))
    assert warnings == []
    monitor, warnings = _monitor()
    monitor.on_event(_step(1, 25.0))
    assert _codes(warnings) == ["health.initial_loss"] and "ln(V) = 10.825" in warnings[0].message


def test_a_resumed_run_does_not_check_its_initial_loss() -> None:
    monitor, warnings = _monitor(start_step=50)
    monitor.on_event(_step(51, 25.0))
    assert warnings == []


def test_no_progress_after_a_share_of_the_run_warns_with_the_lr() -> None:
    monitor, warnings = _monitor(total_steps=2000)  # checked at step max(100, 10% of 2000) = 200
    for step in range(1, 201):
        monitor.on_event(_step(step, LN_V - 0.1))
    assert _codes(warnings) == ["health.no_progress"] and warnings[0].step == 200
    assert "LR is 1.00e-03" in warnings[0].message and "warmup" in warnings[0].message
    monitor, warnings = _monitor(total_steps=2000)
    for step in range(1, 201):
        monitor.on_event(_step(step, LN_V - 0.1 - step * 0.01))
    assert warnings == []


def test_no_progress_is_not_judged_before_100_steps() -> None:
    monitor, warnings = _monitor(total_steps=60)
    for step in range(1, 61):
        monitor.on_event(_step(step, LN_V))
    assert warnings == []


def test_gradient_norm_spike_warns_once_per_window() -> None:
    monitor, warnings = _monitor(start_step=1)  # past step 1: the initial-loss check is not involved
    for step in range(2, 32):
        monitor.on_event(_step(step, 5.0, grad_norm=1.0 + 0.01 * (step % 3)))
    monitor.on_event(_step(32, 5.0, grad_norm=50.0))
    monitor.on_event(_step(33, 5.0, grad_norm=60.0))  # within the window: not repeated
    assert (
        _codes(warnings) == ["health.grad_spike"]
        and warnings[0].step == 32
        and "x its running median" in warnings[0].message
    )


def test_loss_spike_warns() -> None:
    monitor, warnings = _monitor(start_step=1)  # past step 1: the initial-loss check is not involved
    for step in range(2, 32):
        monitor.on_event(_step(step, 5.0 + 0.01 * (step % 4)))
    monitor.on_event(_step(32, 5.5))
    assert warnings == []  # within a nat of the median
    monitor.on_event(_step(33, 7.5))
    assert _codes(warnings) == ["health.loss_spike"] and warnings[0].step == 33


def test_non_finite_steps_are_left_to_the_trainer() -> None:
    monitor, warnings = _monitor(start_step=1)  # past step 1: the initial-loss check is not involved
    for step in range(2, 32):
        monitor.on_event(_step(step, 5.0))
    monitor.on_event(_step(32, math.nan, grad_norm=math.inf))
    assert warnings == [] and len(monitor.losses) == 30


def test_overfitting_names_the_best_checkpoint() -> None:
    monitor, warnings = _monitor(start_step=1)  # past step 1: the initial-loss check is not involved
    train, val = [6.0, 5.0, 4.0, 3.0, 2.0], [5.5, 5.0, 5.1, 5.2, 5.3]
    for i, (t, v) in enumerate(zip(train, val), start=1):
        for step in range(max(2, 10 * i - 9), 10 * i + 1):
            monitor.on_event(_step(step, t))
        monitor.on_event(Evaluated(10 * i, 0, v, 0.1))
        if i == 2:
            monitor.on_event(CheckpointSaved(20, Path("run/checkpoints/step_0000020"), v, True, 0.1))
    assert _codes(warnings) == ["health.overfitting"] and warnings[0].step == 50
    assert "step_0000020" in warnings[0].message and "5.0000 -> 5.3000" in warnings[0].message


def test_rising_validation_loss_with_a_rising_training_loss_is_not_overfitting() -> None:
    monitor, warnings = _monitor(start_step=1)  # past step 1: the initial-loss check is not involved
    for i, v in enumerate([5.0, 5.1, 5.2, 5.3], start=1):
        for step in range(max(2, 10 * i - 9), 10 * i + 1):
            monitor.on_event(_step(step, 4.0 + i * 0.1))
        monitor.on_event(Evaluated(10 * i, 0, v, 0.1))
    assert warnings == []


def _trained_monitor(start_loss: float) -> tuple[HealthMonitor, list[Warned]]:
    """A monitor of a run from a trained model (--init-from) whose step-0 validation loss is `start_loss`."""
    import dataclasses

    warnings: list[Warned] = []
    monitor = HealthMonitor(warnings.append)
    cfg = dataclasses.replace(build_run_config({"preset": "micro"}), origin={"path": "released", "kind": "lmtrain"})
    monitor.on_event(RunStarted(out=Path("run"), config=cfg, plan=make_plan(1000)))
    monitor.on_event(Evaluated(0, 0, start_loss, 0.1))
    return monitor, warnings


def test_a_run_from_a_trained_model_is_checked_against_its_starting_loss_not_ln_v() -> None:
    monitor, warnings = _trained_monitor(3.0)
    monitor.on_event(_step(1, 3.2))  # far from ln(V), near where the model started: fine
    assert warnings == []
    for step in range(2, 101):
        monitor.on_event(_step(step, 2.9))
    assert warnings == []  # below the start at the progress check
    monitor, warnings = _trained_monitor(3.0)
    monitor.on_event(_step(1, 6.0))
    assert _codes(warnings) == ["health.initial_loss"] and "scored 3.000" in warnings[0].message
    monitor, warnings = _trained_monitor(3.0)
    for step in range(1, 101):
        monitor.on_event(_step(step, 3.6))
    assert _codes(warnings) == ["health.no_progress"] and "above the 3.000 the model started at" in warnings[0].message
