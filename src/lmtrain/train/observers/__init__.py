"""The observers of a training run, each in a module of its own, and the one function that subscribes them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from lmtrain.train.events import EventBus
from lmtrain.train.observers.console import PlainConsole, ProgressConsole
from lmtrain.train.observers.health import HealthMonitor
from lmtrain.train.observers.jsonl import JsonlObserver
from lmtrain.train_config import TrainConfig


def _is_terminal(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def build_bus(
    cfg: TrainConfig,
    out: Path,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    wandb_project: str = "lmtrain",
) -> EventBus:
    """An event bus with the console, the sinks --log names and the health checks subscribed.

    Sinks that cannot work (wandb not installed) fail here, before anything is written.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    logging = cfg.logging
    bus = EventBus()
    if "wandb" in logging.sinks:
        from lmtrain.train.observers.wandb import WandbObserver, import_wandb

        wandb_observer = WandbObserver(out, wandb_project, import_wandb())
    bar = logging.progress == "bar" or (logging.progress == "auto" and _is_terminal(stderr))
    if bar:
        from rich.console import Console

        same_terminal = _is_terminal(stdout)
        bus.add(ProgressConsole(Console(file=stderr, force_terminal=True), lines=same_terminal))
        if not same_terminal:  # stdout goes to a file: the file gets the plain lines
            bus.add(PlainConsole(lambda line: print(line, file=stdout, flush=True)))
    else:
        bus.add(PlainConsole(lambda line: print(line, file=stdout, flush=True)))
    if "jsonl" in logging.sinks:
        bus.add(JsonlObserver(out))
    if "tensorboard" in logging.sinks:
        from lmtrain.train.observers.tensorboard import TensorBoardObserver

        bus.add(TensorBoardObserver(out))
    if "wandb" in logging.sinks:
        bus.add(wandb_observer)
    bus.add(HealthMonitor(bus.publish))
    return bus
