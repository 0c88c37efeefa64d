"""Benchmark scoring speed: the batched scorer (`tasks/score.py`) against the one-at-a-time reference
(`bench/tasks_reference.py`) on the same model, items and device, in one run, with every item's outcome compared."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lmtrain.bench.tasks_reference import reference_item
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.model.base import CausalLM
from lmtrain.runtime import eval_mode, synchronize
from lmtrain.tasks.evaluate import LoadedTask, score_tasks


def bench_tasks(
    model: CausalLM,
    tokenizer: Tokenizer,
    tasks: Sequence[LoadedTask],
    *,
    device: torch.device,
    budget: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Items per second of both scorers over every item of `tasks`, their ratio, and which items (if any) the two
    answer differently; per task as well."""
    synchronize(device)
    t0 = time.perf_counter()
    report = score_tasks(model, tokenizer, tasks, device=device, budget=budget)
    synchronize(device)
    batched_s = time.perf_counter() - t0
    log(f"batched: {sum(t.items for t in report.tasks):,} items in {batched_s:.1f} s")
    per_task, differ = {}, []
    reference_s = 0.0
    with eval_mode(model):
        for task, score in zip(tasks, report.tasks):
            t1 = time.perf_counter()
            for i, outcome in enumerate(score.outcomes):
                right, _ = reference_item(model, task.spec, task.items, i, tokenizer=tokenizer, bos=tokenizer.bos_id)
                if right != outcome.correct:
                    differ.append({"task": task.spec.name, "line": task.lines[i]})
            synchronize(device)
            seconds = time.perf_counter() - t1
            reference_s += seconds
            per_task[task.spec.name] = {
                "items": score.items,
                "batched_s": round(score.seconds, 3),
                "reference_s": round(seconds, 3),
                "accuracy": score.accuracy,
            }
            log(f"reference: {task.spec.name} {score.items} items in {seconds:.1f} s")
    items = sum(t.items for t in report.tasks)
    batched_s, reference_s = round(batched_s, 4), round(reference_s, 4)  # the ratio is that of the figures reported
    return {
        "bench": "tasks",
        "tasks": len(tasks),
        "items": items,
        "batched_s": batched_s,
        "reference_s": reference_s,
        "batched_items_per_s": round(items / batched_s, 1),
        "reference_items_per_s": round(items / reference_s, 1),
        "speedup": round(reference_s / batched_s, 2),
        "identical": not differ,
        "items_differing": differ,
        "core": report.core,
        "core_label": report.core_label,
        "per_task": per_task,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
