"""Benchmark tasks scored on a model: tasks loaded and checked before any model runs (`load_tasks`), then every item
encoded, packed, scored in batches and spread over torchrun's ranks (`score_tasks`), with each task's accuracy,
centred score and time, CORE over the CORE tasks scored and ChatCORE over the ChatCORE tasks (asked through the
model's chat template: `chat.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from lmtrain.data.chat.render import ChatRenderer
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.distributed.world import World
from lmtrain.errors import DataError
from lmtrain.model.base import CausalLM
from lmtrain.tasks.chat import chat_prompts, score_chat_items
from lmtrain.tasks.encode import Encoded, encode_item, pack
from lmtrain.tasks.items import check_cap, check_enough, read_items, render, select_items
from lmtrain.tasks.locate import TaskPaths, locate_task, missing_message
from lmtrain.tasks.score import Outcome, score_items
from lmtrain.tasks.spec import (
    CHAT_TYPES,
    CHATCORE,
    CORE,
    TaskSpec,
    TaskTable,
    chat_table,
    core_figure,
    core_label,
    core_table,
    select_tasks,
)


@dataclass(frozen=True)
class LoadedTask:
    """A task's items, shuffled and capped, with each one's record number in its file."""

    spec: TaskSpec
    items: list[dict[str, Any]]
    lines: list[int]
    """Each item's 0-based record number in the task file (the file's order, blank lines not counted)."""


@dataclass(frozen=True)
class TaskScore:
    """One task's result."""

    name: str
    type: str
    shots: int
    items: int
    correct: int
    accuracy: float
    centred: float
    baseline: float
    seconds: float
    not_prefix: int = 0
    """Language modelling: items whose prompt without the answer was not a token prefix of the prompt with it."""
    outcomes: list[Outcome] = field(default_factory=list, repr=False)
    lines: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The figures, without the per-item outcomes."""
        return {
            k: getattr(self, k)
            for k in ("type", "shots", "items", "correct", "accuracy", "centred", "baseline", "seconds", "not_prefix")
        }


@dataclass(frozen=True)
class TasksReport:
    """Every task's score and CORE over the CORE tasks among them."""

    tasks: list[TaskScore]
    core: float | None
    core_covered: int
    core_label: str
    bos: str
    """The beginning-of-sequence token in front of every prompt, e.g. '<|endoftext|> (id 50256)'."""
    max_per_task: int | None
    seconds: float
    chatcore: float | None = None
    chatcore_covered: int = 0
    chatcore_label: str = "ChatCORE"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (`--json`, the run folder's tasks.json)."""
        return {
            "core": self.core,
            "core_tasks": self.core_covered,
            "core_label": self.core_label,
            "chatcore": self.chatcore,
            "chatcore_tasks": self.chatcore_covered,
            "chatcore_label": self.chatcore_label,
            "bos": self.bos,
            "max_per_task": self.max_per_task,
            "seconds": self.seconds,
            "tasks": {t.name: t.to_json() for t in self.tasks},
        }

    def item_rows(self) -> list[dict[str, Any]]:
        """One row per item scored: task, its record number in the file, right or not, the option chosen."""
        return [
            {"task": t.name, "line": line, "correct": o.correct, "choice": o.choice}
            | ({"reply": o.reply} if o.reply is not None else {})
            for t in self.tasks
            for line, o in zip(t.lines, t.outcomes)
        ]


def load_tasks(
    selection: str,
    paths: TaskPaths,
    max_per_task: int | None,
    *,
    table: TaskTable | None = None,
    log: Callable[[str], None] = print,
) -> list[LoadedTask]:
    """The tasks `--tasks` names, their files found (or downloaded), checked, shuffled and capped: every error of
    the task files before any model is loaded."""
    check_cap(max_per_task)  # before any file is read or downloaded
    specs, asked = select_tasks(selection, table)
    found, missing = [], []
    for spec in specs:
        path = locate_task(spec, paths, log=log)
        if path is None:
            missing.append(spec)
            continue
        records = read_items(spec, path)
        numbered = select_items(list(enumerate(records)), max_per_task)
        check_enough(spec, len(numbered))
        found.append(LoadedTask(spec, [r for _, r in numbered], [n for n, _ in numbered]))
    named_missing = [s for s in missing if not (CORE in asked and s.core or CHATCORE in asked and s.chatcore)]
    if named_missing or not found:
        raise DataError(missing_message(named_missing or missing, paths))
    if missing:
        log(f"tasks: no file for {', '.join(s.name for s in missing)}; scoring the {len(found)} tasks present")
    return found


def encoded_items(task: LoadedTask, indices: Sequence[int], tokenizer: Tokenizer, max_len: int) -> list[Encoded]:
    """Items `indices` of `task` as the model scores them: prompts written, tokenized in one batch, spans found."""
    prompts = [render(task.spec, task.items, i) for i in indices]
    ids = iter(tokenizer.encode_batch([t for p in prompts for t in p.texts]))
    bos = tokenizer.bos_id
    return [
        encode_item(task.spec.type, p, [next(ids).tolist() for _ in p.texts], bos=bos, max_len=max_len) for p in prompts
    ]


def scoring_tokens(
    tasks: Sequence[LoadedTask], tokenizer: Tokenizer, max_len: int, d_model: int, sample: int = 8
) -> int:
    """The tokens one scoring of `tasks` runs through the model, estimated from each task's first `sample` items
    (encoded and packed as `score_tasks` packs them) and scaled to its items."""
    total = 0
    for task in tasks:
        if task.spec.type in CHAT_TYPES:  # the prompts, and a reply's tokens each run once through the model
            chosen = task.items[: min(sample, len(task.items))]
            prompts = chat_prompts(ChatRenderer(tokenizer), task.spec, chosen, max_len)
            reply = task.spec.reply_tokens if task.spec.type == "chat_answer" else 0
            total += round(sum(len(p) + reply for p in prompts) / len(prompts) * len(task.items))
            continue
        encoded = encoded_items(task, range(min(sample, len(task.items))), tokenizer, max_len)
        packed = sum(len(u) for e in encoded for u in pack(e, d_model))
        total += round(packed / len(encoded) * len(task.items))
    return total


def bos_of(tokenizer: Tokenizer) -> tuple[int, str]:
    """The tokenizer's beginning-of-sequence id and how to name it."""
    bos = tokenizer.bos_id
    return bos, f"{tokenizer.decode([bos])!r} (id {bos})"


def score_tasks(
    model: CausalLM,
    tokenizer: Tokenizer,
    tasks: Sequence[LoadedTask],
    *,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    world: World | None = None,
    max_per_task: int | None = None,
    budget: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> TasksReport:
    """Every task scored on `model` (each rank of `world` scores every world_size-th item, and every rank gets the
    whole report)."""
    world = world or World(device=device)
    _, bos_text = bos_of(tokenizer)
    max_len = model.config.max_seq_len
    renderer = ChatRenderer(tokenizer) if any(t.spec.type in CHAT_TYPES for t in tasks) else None
    scores, t_all = [], time.perf_counter()
    for task in tasks:
        t0 = time.perf_counter()
        spec = task.spec
        mine = list(range(world.rank, len(task.items), world.world_size))
        if renderer is not None and spec.type in CHAT_TYPES:
            items = [task.items[i] for i in mine]
            outcomes = score_chat_items(model, renderer, spec, items, device=device, autocast=autocast)
            share = (mine, outcomes, 0)
        else:
            encoded = encoded_items(task, mine, tokenizer, max_len)
            outcomes = score_items(model, encoded, device=device, autocast=autocast, budget=budget)
            share = (mine, outcomes, sum(e.not_prefix for e in encoded))
        gathered = world.gather_objects(share)
        ordered: list[Outcome | None] = [None] * len(task.items)
        not_prefix = 0
        for indices, results, bad in gathered:
            not_prefix += bad
            for i, outcome in zip(indices, results):
                ordered[i] = outcome
        done = [o for o in ordered if o is not None]
        correct = sum(o.correct for o in done)
        accuracy = correct / len(done)
        score = TaskScore(
            name=spec.name,
            type=spec.type,
            shots=spec.shots,
            items=len(done),
            correct=correct,
            accuracy=accuracy,
            centred=spec.centred(accuracy),
            baseline=spec.baseline,
            seconds=time.perf_counter() - t0,
            not_prefix=not_prefix,
            outcomes=done,
            lines=task.lines,
        )
        log(f"scored {spec.name}: {len(done):,} items in {score.seconds:.1f} s")
        scores.append(score)
    table, chats = core_table(), chat_table()
    core, covered = core_figure({s.name: s.centred for s, t in zip(scores, tasks) if t.spec.core}, table)
    chatcore, chat_covered = core_figure({s.name: s.centred for s, t in zip(scores, tasks) if t.spec.chatcore}, chats)
    return TasksReport(
        tasks=scores,
        core=core,
        core_covered=covered,
        core_label=core_label(covered, table),
        bos=bos_text,
        max_per_task=max_per_task,
        seconds=time.perf_counter() - t_all,
        chatcore=chatcore,
        chatcore_covered=chat_covered,
        chatcore_label=core_label(chat_covered, chats),
    )
