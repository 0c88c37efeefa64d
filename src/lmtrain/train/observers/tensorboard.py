"""TensorBoard event files in RUN/tensorboard: training and validation curves, warnings, the resolved config.

`tensorboard --logdir RUN/tensorboard` shows them. The x axis is the optimizer step; a resumed run purges
what the previous writer logged after the step it resumes from.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    scalars,
)

FOLDER = "tensorboard"


class TensorBoardObserver:
    """The scalars of `events.scalars` (train/loss, train/lr, ..., val/loss, val/ppl); text for the rest."""

    def __init__(self, out: Path) -> None:
        self.logdir = out / FOLDER
        self.writer = None

    def on_event(self, event: Event) -> None:
        match event:
            case RunStarted():
                from torch.utils.tensorboard import SummaryWriter

                purge = event.plan.start_step + 1 if event.resumed_from is not None else None
                self.writer = SummaryWriter(str(self.logdir), purge_step=purge)
                config = json.dumps(event.config.to_dict(), indent=2)
                self.writer.add_text("run/config", f"```\n{config}\n```", event.plan.start_step)
            case StepEnded(log_point=True) | Evaluated() | TasksScored() if self.writer is not None:
                for name, value in scalars(event).items():
                    self.writer.add_scalar(name, value, event.step)
            case Warned() if self.writer is not None:
                self.writer.add_text("run/warnings", f"[{event.code}] {event.message}", event.step)
            case CheckpointSaved() if self.writer is not None:
                self.writer.flush()
            case RunEnded() | RunFailed() if self.writer is not None:
                self.writer.add_text("run/end", _summary(event), event.step)
                self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _summary(event: RunEnded | RunFailed) -> str:
    if isinstance(event, RunFailed):
        return f"failed at step {event.step}: {event.message}"
    return f"{event.reason} at step {event.step}; best validation loss {event.best_val_loss}"
