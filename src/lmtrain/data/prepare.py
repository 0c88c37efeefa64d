"""Tokenize a split into `{split}.bin` (uint16 token ids) plus `meta.json`, cached by content.

Layout: CACHE/prepared/<dataset>/<split>-<source sha256[:16]>-<tokenizer id>/{<split>.bin, meta.json}.
The folder is built under a temporary name and renamed into place complete, so an interrupted prepare
leaves nothing a later run would trust. Documents are separated by one <|endoftext|> id.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain import __version__
from lmtrain.data.datasets import DataPaths, DatasetSpec
from lmtrain.data.documents import TextCounts, count_text, document_ranges
from lmtrain.data.tokenizer import Tokenizer, TokenizerSource
from lmtrain.errors import DataError
from lmtrain.files import atomic_dir, remove_stale_temps

FORMAT = 1
"""Version of the prepared layout; folders of another format are rebuilt."""

TOKEN_DTYPE = np.uint16
IN_PROCESS_BYTES = 8 << 20
"""Splits smaller than this are tokenized in this process (a pool costs more than it saves)."""


@dataclass(frozen=True)
class PreparedSplit:
    """A tokenized split on disk: `{split}.bin` and its meta.json."""

    folder: Path
    meta: Mapping[str, Any]

    @property
    def split(self) -> str:
        return str(self.meta["split"])

    @property
    def bin_path(self) -> Path:
        return self.folder / f"{self.split}.bin"

    @property
    def num_tokens(self) -> int:
        return int(self.meta["tokens"])

    def tokens(self) -> np.ndarray:
        """The token ids as a read-only uint16 memmap."""
        return np.memmap(self.bin_path, dtype=TOKEN_DTYPE, mode="r", shape=(self.num_tokens,))

    def summary(self) -> dict[str, int]:
        """documents, tokens, original_tokens and bytes of the split."""
        return {k: int(self.meta[k]) for k in ("documents", "tokens", "original_tokens", "bytes")}


@dataclass(frozen=True)
class PrepareResult:
    """What preparing one split did: the prepared split, where its text came from, whether it was cached."""

    prepared: PreparedSplit
    source: Path
    cached: bool
    seconds: float


def read_prepared(folder: Path) -> PreparedSplit | None:
    """The prepared split in `folder` if it is complete and of the current format, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        prepared = PreparedSplit(folder, meta)
        complete = meta.get("format") == FORMAT and prepared.bin_path.stat().st_size == 2 * prepared.num_tokens
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return prepared if complete else None


def _sha256(buf: Any) -> str:
    digest = hashlib.sha256()
    view = memoryview(buf)
    for start in range(0, len(view), 64 << 20):
        digest.update(view[start : start + (64 << 20)])
    return digest.hexdigest()


def _chunks(ranges: Sequence[tuple[int, int]], target: int) -> list[list[tuple[int, int]]]:
    """Group consecutive document ranges into chunks of about `target` bytes."""
    chunks: list[list[tuple[int, int]]] = [[]]
    size = 0
    for start, end in ranges:
        if size >= target:
            chunks.append([])
            size = 0
        chunks[-1].append((start, end))
        size += end - start
    return [c for c in chunks if c]


@dataclass(frozen=True)
class _Chunk:
    path: str
    tokenizer: TokenizerSource
    ranges: list[tuple[int, int]]


def _encode_chunk(task: _Chunk) -> tuple[np.ndarray, int, TextCounts]:
    """Tokens of the chunk's documents joined by <|endoftext|>, its document count and text counts."""
    tok = Tokenizer(task.tokenizer)
    base, stop = task.ranges[0][0], task.ranges[-1][1]
    with open(task.path, "rb") as f:
        f.seek(base)
        data = f.read(stop - base)
    eot = np.array([tok.eot_id], dtype=np.uint32)
    parts: list[np.ndarray] = []
    counts = TextCounts(0, 0, 0)
    for start, end in task.ranges:
        raw = data[start - base : end - base]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset = start + exc.start
            with open(task.path, "rb") as f:
                line = f.read(offset).count(b"\n") + 1
            raise DataError(
                f"{task.path} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {offset} (line {line}); "
                f"convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if parts:
            parts.append(eot)
        parts.append(tok.encode_array(text))
        counts = counts + count_text(raw)
    return np.concatenate(parts).astype(TOKEN_DTYPE), len(task.ranges), counts


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up


def _encoded(tasks: list[_Chunk], workers: int) -> Iterator[tuple[np.ndarray, int, TextCounts]]:
    if workers <= 1 or len(tasks) == 1:
        yield from map(_encode_chunk, tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_ignore_sigint)
    try:
        yield from pool.map(_encode_chunk, tasks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def prepare_split(
    spec: DatasetSpec,
    split: str,
    source: Path,
    tokenizer: Tokenizer,
    cache_dir: Path,
    *,
    workers: int | None = None,
    chunk_bytes: int | None = None,
    force: bool = False,
) -> PrepareResult:
    """Tokenize `source` (the `split` file of `spec`) into the cache, or reuse an identical earlier result."""
    t0 = time.perf_counter()
    workers = workers or default_workers()
    size = source.stat().st_size
    if size == 0:
        raise DataError(f"{source} is empty; the {split} split needs text")
    with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        sha = _sha256(mm)
        folder = cache_dir / "prepared" / spec.name / f"{split}-{sha[:16]}-{tokenizer.cache_id()}"
        existing = None if force else read_prepared(folder)
        if existing is not None:
            return PrepareResult(existing, source, True, time.perf_counter() - t0)
        ranges = document_ranges(mm, spec.documents)
    if not ranges:
        raise DataError(f"{source} holds no text; the {split} split needs some")
    target = chunk_bytes or min(16 << 20, max(1 << 20, size // (4 * workers)))
    tasks = [_Chunk(str(source), tokenizer.source, c) for c in _chunks(ranges, target)]
    in_process = size < IN_PROCESS_BYTES and chunk_bytes is None
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder.parent, ".*.tmp-*")
    with atomic_dir(folder, replace=True) as tmp:  # --force, or a stale or damaged folder, is replaced whole
        n_tokens, n_docs, counts = _write_tokens(tmp / f"{split}.bin", _encoded(tasks, 1 if in_process else workers))
        meta = {
            "format": FORMAT,
            "lmtrain_version": __version__,
            "dataset": spec.name,
            "split": split,
            "documents_kind": spec.documents,
            "source": {"path": str(source.resolve()), "sha256": sha, "bytes": size},
            "tokenizer": tokenizer.fingerprint(),
            "dtype": "uint16",
            "tokens": n_tokens,
            "documents": n_docs,
            "original_tokens": counts.original_tokens,
            "bytes": counts.bytes,
            "lines": counts.lines,
            "words": counts.words,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    prepared = read_prepared(folder)
    if prepared is None:
        raise DataError(f"prepared split in {folder} could not be read back; delete it and run prepare again")
    return PrepareResult(prepared, source, False, time.perf_counter() - t0)


def _write_tokens(path: Path, results: Iterable[tuple[np.ndarray, int, TextCounts]]) -> tuple[int, int, TextCounts]:
    eot = np.array([Tokenizer.eot_id], dtype=TOKEN_DTYPE).tobytes()
    n_tokens, n_docs, counts = 0, 0, TextCounts(0, 0, 0)
    with open(path, "wb") as out:
        for tokens, docs, chunk_counts in results:
            if n_docs:
                out.write(eot)
                n_tokens += 1
            out.write(tokens.tobytes())
            n_tokens += len(tokens)
            n_docs += docs
            counts = counts + chunk_counts
    return n_tokens, n_docs, counts


def prepare_dataset(
    spec: DatasetSpec,
    sources: Mapping[str, Path],
    paths: DataPaths,
    tokenizer: Tokenizer,
    *,
    workers: int | None = None,
    force: bool = False,
) -> dict[str, PrepareResult]:
    """Prepare each located split (see `locate_splits`); results keyed by split."""
    return {
        split: prepare_split(spec, split, src, tokenizer, paths.cache_dir, workers=workers, force=force)
        for split, src in sources.items()
    }
