"""Crash-safe file operations: atomic replacement, fsync, and clean-up of temporaries left by dead processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from lmtrain.errors import ConfigError


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file (what `sha256sum` prints), read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's content to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of `path` owned by this process: `.NAME.KIND-PID`."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old or the new content, never a mix."""
    tmp = temp_name(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def new_or_empty(path: Path) -> bool:
    """Whether `path` does not exist yet or is an empty folder: where a new run, export or tokenizer may be written."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def require_new_folder(path: Path, flag: str = "--out") -> None:
    """A ConfigError unless `path` is new or an empty folder (nothing there is ever replaced)."""
    if not new_or_empty(path):
        raise ConfigError(f"{flag} {path} already exists and is not empty; choose a new folder")


def remove_dir(path: Path) -> None:
    """Rename a folder out of the way, then delete it, so a half-deleted folder never keeps its name."""
    trash = temp_name(path, "del")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, pattern: str) -> None:
    """Delete entries matching `pattern` (names ending in -PID) whose process no longer exists."""
    for stale in parent.glob(pattern):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block succeeds, fsync it and rename it to `final`.

    If the block fails or the process dies, `final` is untouched. An empty `final` folder is taken over; a
    non-empty one is replaced only with `replace=True` (it is renamed away first), else it is a FileExistsError.
    """
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
        fsync_dir(tmp)
        if final.is_dir() and new_or_empty(final):
            final.rmdir()  # an empty folder is as good as none
        elif final.exists():
            if not replace:
                raise FileExistsError(final)
            remove_dir(final)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of `path` (a lock file, created if missing, never deleted) for the block: a process
    that holds it already is waited for (`waiting` is called once first). The lock goes with its process however
    that process ends, so a killed holder never leaves it taken."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
