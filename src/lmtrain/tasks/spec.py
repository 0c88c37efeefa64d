"""What a benchmark task is (`TaskSpec`), the tables of the CORE and ChatCORE tasks (`core.toml`, `chatcore.toml`:
data, not code) and the choice of tasks a `--tasks` value makes: `core`, `chatcore`, task names, or a TOML file of the
user's own tasks, comma-separated."""

from __future__ import annotations

import functools
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomllib

from lmtrain.errors import ConfigError

TaskType = Literal["multiple_choice", "schema", "language_modeling", "chat_choice", "chat_answer"]
TASK_TYPES: tuple[str, ...] = typing.get_args(TaskType)
CHAT_TYPES = ("chat_choice", "chat_answer")
"""Tasks asked as a conversation through the model's chat template (`tasks/chat.py`)."""
FOLDERS = ("core", "chat")
"""Where a table's task file lives under $LMTRAIN_DATA_DIR and the cache (the data mirror's layout)."""

CORE = "core"
"""The `--tasks` value that means every CORE task whose file is present."""
CHATCORE = "chatcore"
"""The `--tasks` value that means every ChatCORE task whose file is present."""
TABLE = "core.toml"
CHAT_TABLE = "chatcore.toml"
REQUIRED = ("name", "file", "type", "shots", "delimiter", "baseline")
OPTIONAL = ("sha256", "source", "folder", "reply_tokens")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One in-context-learning task: its items' file and how they are turned into prompts and scored."""

    name: str
    file: str
    """The JSON-lines file, relative to the tasks folder (or to `root`, for a task of the user's own)."""
    type: TaskType
    shots: int
    """Few-shot examples in front of each item."""
    delimiter: str
    """The text between a query (context) and its answer (continuation)."""
    baseline: float
    """Accuracy of random guessing in percent (DCLM's eval_meta_data.csv for the CORE tasks)."""
    sha256: str | None = None
    """The file's pinned SHA-256 (checked wherever it is read from); None: not pinned."""
    source: str | None = None
    """Where the file is downloaded from when it is nowhere local; None: it is never downloaded."""
    root: Path | None = None
    """The folder `file` is relative to for a user's task (its TOML file's); None: a tasks folder of the CORE layout."""
    core: bool = False
    """One of the CORE metric's tasks."""
    chatcore: bool = False
    """One of the ChatCORE metric's tasks."""
    folder: str = "core"
    """The folder of the data mirror's layout its file is under: core (CORE's files, ARC) or chat (GSM8K)."""
    reply_tokens: int = 256
    """chat_answer: tokens a reply has at most (a GSM8K solution takes about 100 to 200)."""

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not _NAME.fullmatch(self.name or ""):
            raise ConfigError(f"task name {self.name!r} must be letters, digits, '_', '.' or '-'")
        if self.type not in TASK_TYPES:
            raise ConfigError(f"{where}: type {self.type!r} must be one of {', '.join(TASK_TYPES)}")
        if not isinstance(self.shots, int) or isinstance(self.shots, bool) or self.shots < 0:
            raise ConfigError(f"{where}: shots={self.shots!r} must be a whole number >= 0")
        if not isinstance(self.delimiter, str):
            raise ConfigError(f'{where}: delimiter must be a string (e.g. " " or "\\nAnswer: ")')
        if not isinstance(self.baseline, int | float) or not 0 <= self.baseline < 100:
            raise ConfigError(f"{where}: baseline={self.baseline!r} must be a percentage, 0 <= baseline < 100")
        if not isinstance(self.file, str) or not self.file:
            raise ConfigError(f"{where}: file must name its JSON-lines file")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ConfigError(f"{where}: sha256 must be 64 lower-case hexadecimal digits")
        if self.folder not in FOLDERS:
            raise ConfigError(f"{where}: folder {self.folder!r} must be one of {', '.join(FOLDERS)}")
        if not isinstance(self.reply_tokens, int) or isinstance(self.reply_tokens, bool) or self.reply_tokens < 1:
            raise ConfigError(f"{where}: reply_tokens={self.reply_tokens!r} must be a whole number >= 1")
        if self.type in CHAT_TYPES and self.shots != 0:
            raise ConfigError(f"{where}: a {self.type} task is asked as one chat question; set shots = 0")

    def centred(self, accuracy: float) -> float:
        """The accuracy with chance at 0 and a perfect score at 1: (acc - b) / (1 - b), b the baseline fraction."""
        b = self.baseline / 100
        return (accuracy - b) / (1 - b)


@dataclass(frozen=True)
class TaskTable:
    """Tasks by name, how many tasks the metric is defined over, and its name."""

    tasks: dict[str, TaskSpec]
    core_tasks: int
    label: str = "CORE"


def parse_tasks(
    data: Mapping[str, Any], origin: str, *, root: Path | None, core: bool = False, chatcore: bool = False
) -> list[TaskSpec]:
    """The `[[task]]` entries of a parsed TOML table; a ConfigError naming `origin` for a missing or unknown key."""
    entries = data.get("task")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{origin} has no [[task]] entries; each needs {', '.join(REQUIRED)}")
    found: list[TaskSpec] = []
    for n, entry in enumerate(entries, 1):
        label = f"{origin}: task {n}" + (
            f" ({entry.get('name')})" if isinstance(entry, dict) and "name" in entry else ""
        )
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} is not a table")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ConfigError(f"{label} has no {', '.join(missing)}; every task needs {', '.join(REQUIRED)}")
        unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ConfigError(
                f"{label}: unknown key {', '.join(unknown)}; the keys are {', '.join(REQUIRED + OPTIONAL)}"
            )
        try:
            found.append(TaskSpec(**entry, root=root, core=core, chatcore=chatcore))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    names = [t.name for t in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{origin} defines task {', '.join(twice)} more than once")
    return found


def _package_table(name: str, label: str, *, core: bool = False, chatcore: bool = False) -> TaskTable:
    """The tasks of the package's table `name` (core.toml, chatcore.toml), each marked as one of the `label` metric's
    tasks."""
    data = tomllib.loads(resources.files("lmtrain.tasks").joinpath(name).read_text(encoding="utf-8"))
    tasks = parse_tasks(data, name, root=None, core=core, chatcore=chatcore)
    return TaskTable({t.name: t for t in tasks}, int(data["core_tasks"]), label=label)


@functools.cache
def core_table() -> TaskTable:
    """The CORE tasks of the package's `core.toml` (read once; callers never change it)."""
    return _package_table(TABLE, "CORE", core=True)


@functools.cache
def chat_table() -> TaskTable:
    """The ChatCORE tasks of the package's `chatcore.toml` (read once; callers never change it)."""
    return _package_table(CHAT_TABLE, "ChatCORE", chatcore=True)


def read_task_file(path: Path) -> list[TaskSpec]:
    """A user's tasks from a TOML file; their `file`s are relative to the TOML file's folder."""
    if not path.is_file():
        raise ConfigError(f"--tasks {path}: no such file; give an existing .toml file of [[task]] entries")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tasks {path} is not valid TOML ({exc})") from None
    return parse_tasks(data, str(path), root=path.parent)


def select_tasks(selection: str, table: TaskTable | None = None) -> tuple[list[TaskSpec], set[str]]:
    """The tasks `--tasks` names, in order, each once, and which of `core` and `chatcore` were asked for (then their
    tasks whose file is absent are left out rather than refused). Entries: `core`, `chatcore`, a task name, or a path
    ending in .toml."""
    table = table or core_table()
    suites = {CORE: table, CHATCORE: chat_table()}
    named = {**table.tasks, **suites[CHATCORE].tasks}
    chosen: dict[str, TaskSpec] = {}
    asked: set[str] = set()
    entries = [e.strip() for e in selection.split(",") if e.strip()]
    if not entries:
        raise ConfigError("--tasks is empty; give core, chatcore, task names (e.g. hellaswag,arc_easy) or a .toml file")
    for entry in entries:
        if entry in suites:
            asked.add(entry)
            new = list(suites[entry].tasks.values())
        elif entry.endswith(".toml"):
            new = read_task_file(Path(entry).expanduser())
        elif entry in named:
            new = [named[entry]]
        else:
            raise ConfigError(
                f"unknown task {entry!r}; known: {CORE}, {CHATCORE}, {', '.join(named)}, or a .toml file of your own "
                f"tasks"
            )
        for task in new:
            if task.name in chosen and chosen[task.name] != task:
                raise ConfigError(f"two different tasks are named {task.name!r}; rename one in your .toml file")
            chosen[task.name] = task
    return list(chosen.values()), asked


def core_figure(centred: Mapping[str, float], table: TaskTable) -> tuple[float | None, int]:
    """(CORE, tasks it covers): the mean centred score of the CORE tasks scored, None when none was."""
    scores = [v for name, v in centred.items() if name in table.tasks and math.isfinite(v)]
    return (sum(scores) / len(scores) if scores else None), len(scores)


def core_label(covered: int, table: TaskTable) -> str:
    """'CORE' over every task, else 'CORE (20 of 22 tasks)' (ChatCORE alike)."""
    name = table.label
    return name if covered == table.core_tasks else f"{name} ({covered} of {table.core_tasks} tasks)"
