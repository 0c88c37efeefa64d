"""Weights & Biases, only when asked for (`--log ...,wandb`) and installed; the project is $WANDB_PROJECT or lmtrain.

The W&B run id is kept in RUN/wandb_id, so a resumed lmtrain run continues the same W&B run. W&B's own settings
(WANDB_MODE=offline, WANDB_DIR, ...) apply as usual.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lmtrain.errors import ConfigError
from lmtrain.train.events import (
    Evaluated,
    Event,
    RunEnded,
    RunFailed,
    RunStarted,
    StepEnded,
    TasksScored,
    Warned,
    scalars,
)

ID_FILE = "wandb_id"


def import_wandb() -> Any:
    """The wandb module, or a ConfigError saying how to get it."""
    try:
        return importlib.import_module("wandb")
    except ImportError:
        raise ConfigError(
            "--log names wandb, but the wandb package is not installed; pip install wandb, or leave wandb out of --log"
        ) from None


class WandbObserver:
    """Logs the same scalars as TensorBoard to a W&B run, and warnings and the outcome to its summary."""

    def __init__(self, out: Path, project: str, wandb: Any) -> None:
        self.out, self.project, self.wandb = out, project, wandb
        self.run: Any = None
        self.warnings = 0

    def on_event(self, event: Event) -> None:
        match event:
            case RunStarted():
                id_file = self.out / ID_FILE
                run_id = id_file.read_text().strip() if id_file.is_file() else self.wandb.util.generate_id()
                id_file.write_text(run_id + "\n")
                self.run = self.wandb.init(
                    project=self.project,
                    name=self.out.name,
                    id=run_id,
                    resume="allow",
                    dir=str(self.out),
                    config=event.config.to_dict(),
                )
            case StepEnded(log_point=True) | Evaluated() | TasksScored() if self.run is not None:
                self.run.log(scalars(event), step=event.step)
            case Warned() if self.run is not None:
                self.warnings += 1
                self.run.summary["warnings"] = self.warnings
                self.run.summary["last_warning"] = f"step {event.step} [{event.code}] {event.message}"
            case RunEnded() if self.run is not None:
                self.run.summary["outcome"] = event.reason
                self.run.summary["best_val_loss"] = event.best_val_loss
                self.run.finish(exit_code=event.exit_code)
                self.run = None
            case RunFailed() if self.run is not None:
                self.run.summary["outcome"] = f"failed: {event.message}"
                self.run.finish(exit_code=3)
                self.run = None

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
