"""A run's benchmark tasks (`--tasks`): scored every --tasks-every steps and at the end, on the weights the run
keeps, each rank scoring its share of the items."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lmtrain.data.datasets import DataPaths
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.distributed.world import World
from lmtrain.runtime import autocast
from lmtrain.train.ema import EMA
from lmtrain.train.events import TasksScored
from lmtrain.train_config import EvalConfig

if TYPE_CHECKING:
    from lmtrain.model.base import CausalLM
    from lmtrain.tasks.evaluate import LoadedTask


def load_run_tasks(cfg: EvalConfig, paths: DataPaths, log: Callable[[str], None] = print) -> list[LoadedTask]:
    """The run's --tasks loaded and capped at --tasks-max-per-task (none without --tasks): every error of the task
    files before the run starts."""
    from lmtrain.tasks.evaluate import load_tasks
    from lmtrain.tasks.locate import TaskPaths

    if not cfg.tasks:
        return []
    tasks_dir = Path(cfg.tasks_dir).expanduser() if cfg.tasks_dir else None
    return load_tasks(cfg.tasks, TaskPaths(tasks_dir, paths), cfg.tasks_max_per_task or None, log=log)


class RunTasks:
    """When a run scores its tasks, and the scoring itself."""

    def __init__(
        self,
        tasks: Sequence[LoadedTask],
        cfg: EvalConfig,
        *,
        tokenizer: Tokenizer,
        world: World,
        device: torch.device,
        dtype: str,
    ) -> None:
        self.tasks, self.every, self.cap = tuple(tasks), cfg.tasks_every, cfg.tasks_max_per_task or None
        self.tokenizer, self.world, self.device, self.dtype = tokenizer, world, device, dtype
        self.last: int | None = None

    def due(self, step: int, *, final: bool = False) -> bool:
        """Whether step `step` scores the tasks (every `every` steps, and the last step), once per step."""
        if not self.tasks or self.last == step:
            return False
        return final or bool(self.every) and step % self.every == 0

    def score(self, model: CausalLM, ema: EMA | None, step: int, tokens_per_step: int) -> TasksScored:
        """The tasks scored on `model` (its EMA weights with --ema) after `step` steps of `tokens_per_step`."""
        from lmtrain.tasks.evaluate import score_tasks

        t0 = time.perf_counter()
        with ema.swapped() if ema is not None else contextlib.nullcontext():
            report = score_tasks(
                model,
                self.tokenizer,
                self.tasks,
                device=self.device,
                autocast=lambda: autocast(self.device, self.dtype),
                world=self.world,
                max_per_task=self.cap,
            )
        self.last = step
        return TasksScored(
            step=step, tokens=step * tokens_per_step, report=report.to_json(), seconds=time.perf_counter() - t0
        )
