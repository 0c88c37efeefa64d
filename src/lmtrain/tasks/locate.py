"""Where a task's file is read from: `--tasks-dir`, `$LMTRAIN_DATA_DIR/core/` (the data mirror's layout; GSM8K under
`chat/`, as the task's `folder` says), lmtrain's cache (`<cache>/core/`, `<cache>/chat/`), or a download from the
file's pinned public source into the cache; a pinned SHA-256 is checked wherever the file comes from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmtrain.data.datasets import DataPaths
from lmtrain.data.download import download
from lmtrain.errors import DataError
from lmtrain.files import sha256_file
from lmtrain.tasks.spec import TaskSpec

GET_THEM = "lmtrain eval RUN --tasks core (downloads them into the cache), or --tasks-dir DIR with the files"


@dataclass(frozen=True)
class TaskPaths:
    """Where task files are looked for, in order."""

    tasks_dir: Path | None
    """--tasks-dir: it must exist (a mistyped folder is an error, never a silent fall back to the others)."""
    data: DataPaths

    def __post_init__(self) -> None:
        if self.tasks_dir is not None and not self.tasks_dir.is_dir():
            what = "is not a folder" if self.tasks_dir.exists() else "does not exist"
            raise DataError(f"--tasks-dir {self.tasks_dir} {what}; give the folder holding the task files")

    def folders(self, folder: str = "core") -> list[Path]:
        """The folders tried for a task file under `folder` of the data mirror's layout, in order."""
        found = [self.tasks_dir] if self.tasks_dir is not None else []
        if self.data.env_dir is not None:
            found.append(self.data.env_dir / folder)
        return found + [self.data.cache_dir / folder]


def locate_task(task: TaskSpec, paths: TaskPaths, log: Callable[[str], None] = print) -> Path | None:
    """The verified file of `task`, downloaded when it is nowhere local (and may be); None when it is absent and has
    no source or downloads are off. A DataError for a file whose SHA-256 is not the pinned one, or a failed
    download."""
    if task.root is not None:
        path = task.root / task.file
        return _verified(task, path) if path.is_file() else None
    for folder in paths.folders(task.folder):
        path = folder / task.file
        if path.is_file():
            return _verified(task, path)
    if task.source is None or task.sha256 is None or not paths.data.download:
        return None
    dest = paths.data.cache_dir / task.folder / task.file
    return download(task.source, dest, task.sha256, log=log)


def where_looked(task: TaskSpec, paths: TaskPaths) -> str:
    """The places `locate_task` tried for `task`, for an error message."""
    if task.root is not None:
        return str(task.root / task.file)
    return ", ".join(str(folder / task.file) for folder in paths.folders(task.folder))


def missing_message(tasks: list[TaskSpec], paths: TaskPaths) -> str:
    """One line: which task files are missing, where they were looked for and how to get them."""
    names = ", ".join(t.name for t in tasks)
    first = tasks[0]
    if first.root is not None:
        return f"task file {first.root / first.file} (task {first.name}) does not exist; create it or fix `file`"
    if not paths.data.download:
        why = " (downloads are off: --no-download)"
    elif not all(t.source for t in tasks):
        why = " (no byte-identical public copy is pinned, so it is not downloaded)"
    else:
        why = ""
    return f"no file for task {names}: looked in {where_looked(first, paths)}{why}" + f"; get them with: {GET_THEM}"


def _verified(task: TaskSpec, path: Path) -> Path:
    """`path`, after its SHA-256 is checked against the pinned one (a DataError naming the file otherwise)."""
    if task.sha256 is not None:
        got = sha256_file(path)
        if got != task.sha256:
            raise DataError(
                f"{path} (task {task.name}) has SHA-256 {got[:16]}..., not the pinned {task.sha256[:16]}...: it is "
                f"not the published file; replace it with the original (or delete it to download it again)"
            )
    return path
