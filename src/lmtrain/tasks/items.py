"""A task's items: read and checked from JSON lines, shuffled and capped, given their few-shot examples and written
out as prompts, by the rules DCLM and nanochat score CORE with (`../shared/data/core/README.md`,
docs/benchmarks.md).

- items are shuffled with `random.Random(1337)`; `--max-per-task N` keeps the first N of that order;
- the few-shot examples of item i are `random.Random(1234 + i).sample(...)` of every other index of that shuffled,
  capped list, each written as query (gold context option, context) + delimiter + gold answer + a blank line;
- multiple choice: one prompt per choice; schema: one prompt per context option; language modelling: the prompt
  without the continuation (stripped of white space at both ends) and the prompt with it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtrain.errors import ConfigError, DataError
from lmtrain.tasks.answers import LETTERS, final_number
from lmtrain.tasks.spec import TaskSpec

SHUFFLE_SEED = 1337
FEWSHOT_SEED = 1234

FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "multiple_choice": {"query": str, "choices": list, "gold": int},
    "schema": {"context_options": list, "continuation": str, "gold": int},
    "language_modeling": {"context": str, "continuation": str},
    "chat_choice": {"query": str, "choices": list, "gold": int},
    "chat_answer": {"question": str, "answer": str},
}
"""The fields each record shape needs, with their JSON types (other fields are ignored)."""


@dataclass(frozen=True)
class Prompts:
    """The texts one item is scored on: a prompt per option (language modelling: without and with the answer)."""

    texts: list[str]
    gold: int | None
    """The index of the right option (None for language modelling)."""


def read_items(task: TaskSpec, path: Path) -> list[dict[str, Any]]:
    """Every record of `path`, each checked against the shape of `task.type`; a DataError naming the file and line
    for a line that is not JSON, a record of the wrong shape, a `gold` out of range, or an empty file."""
    need = FIELDS[task.type]
    items: list[dict[str, Any]] = []
    data = path.read_bytes()
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line} (task {task.name}) is not UTF-8 text (byte {exc.start:,}); "
            f"a task file holds one JSON record per line: replace it with the task's file"
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number} (task {task.name})"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not JSON ({exc.msg} at column {exc.colno}); fix or remove that line") from None
        _check_record(record, need, task, where)
        items.append(record)
    if not items:
        raise DataError(f"{path} (task {task.name}) holds no items; give it one JSON record per line")
    return items


def _check_record(record: Any, need: dict[str, Any], task: TaskSpec, where: str) -> None:
    shape = f"a {task.type} record needs {', '.join(need)}"
    if not isinstance(record, dict):
        raise DataError(f"{where} is a JSON {type(record).__name__}, not an object; {shape}")
    missing = [k for k in need if k not in record]
    wrong = [k for k, tp in need.items() if k in record and not _is(record[k], tp)]
    if missing or wrong:
        has = ", ".join(record) or "no fields"
        problem = f"has no {', '.join(missing)}" if missing else f"has {', '.join(wrong)} of the wrong type"
        raise DataError(f"{where} {problem} (it has {has}); {shape}")
    options = record.get("choices", record.get("context_options"))
    if options is not None:
        if len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise DataError(
                f"{where}: {'choices' if 'choices' in record else 'context_options'} must be 2 or more strings"
            )
        if not 0 <= record["gold"] < len(options):
            raise DataError(
                f"{where}: gold={record['gold']} is out of range for {len(options)} options (0..{len(options) - 1})"
            )
    if task.type == "chat_choice" and len(record["choices"]) > len(LETTERS):
        raise DataError(f"{where}: {len(record['choices'])} choices; a chat_choice item has at most {len(LETTERS)}")
    if task.type == "chat_answer" and final_number(record["answer"]) is None:
        raise DataError(f"{where}: the answer has no number to compare with (GSM8K's end with '#### <number>')")
    if task.type == "language_modeling" and not record["continuation"].strip():
        raise DataError(f"{where}: the continuation is empty; a language-modelling item needs text to predict")


def _is(value: Any, tp: type | tuple[type, ...]) -> bool:
    return isinstance(value, tp) and not (tp is int and isinstance(value, bool))


def check_cap(max_per_task: int | None) -> None:
    """A ConfigError unless `max_per_task` is None (every item) or at least 1."""
    if max_per_task is not None and max_per_task < 1:
        raise ConfigError(f"--max-per-task {max_per_task} must be at least 1 (leave it out for every item)")


def select_items(items: Sequence[dict[str, Any]], max_per_task: int | None) -> list[dict[str, Any]]:
    """The items in the order of `random.Random(1337).shuffle`, the first `max_per_task` of them when given."""
    check_cap(max_per_task)
    shuffled = list(items)
    random.Random(SHUFFLE_SEED).shuffle(shuffled)
    return shuffled if max_per_task is None else shuffled[:max_per_task]


def check_enough(task: TaskSpec, n_items: int) -> None:
    """A ConfigError when a task has too few items to draw its few-shot examples from (shots + 1 are needed: the
    examples are other items of the same task)."""
    if task.shots and n_items < task.shots + 1:
        raise ConfigError(
            f"task {task.name} has {n_items} item{'s' * (n_items != 1)} to score but is {task.shots}-shot: each item "
            f"needs {task.shots} other items as examples, so at least {task.shots + 1}; raise --max-per-task to "
            f"{task.shots + 1} or more, or give the task more items"
        )


def fewshot_indices(index: int, n_items: int, shots: int) -> list[int]:
    """The indices of item `index`'s few-shot examples among `n_items`: `random.Random(1234 + index).sample` of
    every other index."""
    if not shots:
        return []
    others = [i for i in range(n_items) if i != index]
    return random.Random(FEWSHOT_SEED + index).sample(others, shots)


def render(task: TaskSpec, items: Sequence[dict[str, Any]], index: int) -> Prompts:
    """The prompts of item `index` of `items` (the shuffled, capped list its examples are drawn from)."""
    item, delim = items[index], task.delimiter
    examples = [items[i] for i in fewshot_indices(index, len(items), task.shots)]
    if task.type == "multiple_choice":
        shots = "".join(f"{e['query']}{delim}{e['choices'][e['gold']]}\n\n" for e in examples)
        return Prompts([f"{shots}{item['query']}{delim}{choice}" for choice in item["choices"]], item["gold"])
    if task.type == "schema":
        shots = "".join(f"{e['context_options'][e['gold']]}{delim}{e['continuation']}\n\n" for e in examples)
        return Prompts([f"{shots}{c}{delim}{item['continuation']}" for c in item["context_options"]], item["gold"])
    shots = "".join(f"{e['context'].strip()}{delim}{e['continuation']}\n\n" for e in examples)
    without = f"{shots}{item['context'].strip()}{delim}"
    return Prompts([without.strip(), without + item["continuation"]], None)
