"""A checkpoint scored on benchmark tasks: the tasks checked first, then the model and the tokenizer it carries,
every task scored (over torchrun's ranks when launched so), and the result recorded in the run's tasks.json.

`lmtrain eval --tasks` is this function behind flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmtrain.data.datasets import DataPaths
from lmtrain.tasks.evaluate import TasksReport
from lmtrain.tasks.locate import TaskPaths


@dataclass(frozen=True, kw_only=True)
class TasksRequest:
    """Which tasks to score a checkpoint on, and how."""

    tasks: str
    """`--tasks`: core, task names, or .toml files of the user's own tasks, comma-separated."""
    tasks_dir: Path | None = None
    max_per_task: int | None = None
    device: str = "auto"
    dtype: str = "fp32"
    weights: str = "auto"
    batch_tokens: int | None = None
    """Padded tokens per forward pass (default: tasks/score.py's per device)."""


@dataclass(frozen=True)
class CheckpointTasks:
    """The scores of one checkpoint, and where they were recorded (None on ranks other than 0)."""

    checkpoint: Path
    step: int
    report: TasksReport
    recorded: Path | None


def evaluate_checkpoint_tasks(
    path: Path, request: TasksRequest, paths: DataPaths, log: Callable[[str], None] = print
) -> CheckpointTasks:
    """The checkpoint at `path` (a run folder means its best) scored on `request.tasks`."""
    from lmtrain.distributed.world import init_world
    from lmtrain.interop.open import open_model
    from lmtrain.runtime import autocast, select_dtype
    from lmtrain.tasks.evaluate import bos_of, load_tasks, score_tasks
    from lmtrain.tasks.results import record_results, results_file

    tasks = load_tasks(request.tasks, TaskPaths(request.tasks_dir, paths), request.max_per_task, log=log)
    world = init_world(request.device, "ddp", timeout_s=1800.0)
    try:
        opened = open_model(path, weights=request.weights)
        device = world.device
        ckpt, model, config = opened.path, opened.model(device), opened.checkpoint
        tokenizer = opened.tokenizer(paths.tokenizer_search())
        dtype = select_dtype(request.dtype, device)
        say = log if world.is_main else (lambda _msg: None)
        say(
            f"{ckpt}: {len(tasks)} tasks, {sum(len(t.items) for t in tasks):,} items, prompts begin with "
            f"{bos_of(tokenizer)[1]}, context {model.config.max_seq_len}"
        )
        report = score_tasks(
            model,
            tokenizer,
            tasks,
            device=device,
            autocast=lambda: autocast(device, dtype),
            world=world,
            max_per_task=request.max_per_task,
            budget=request.batch_tokens,
            log=say,
        )
    finally:
        world.close()
    step = int((config.get("checkpoint") or {}).get("step") or 0)
    recorded = None
    if world.is_main:
        entry = report.to_json() | {"checkpoint": str(ckpt), "step": step}
        recorded = record_results(results_file(ckpt), step, entry)
    return CheckpointTasks(ckpt, step, report, recorded)
