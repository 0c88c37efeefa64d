"""Tokenize a corpus into shards plus meta.json, cached by content, streaming with bounded memory on all cores.

Each Source of a corpus (a split's files, or a pool with held-out splits) is prepared into its own folder, keyed by
the sha256 of every input file, how documents are read and assigned to splits, and the tokenizer (`shards.py` has the
layout). Units of about `block_bytes` are tokenized by a pool of worker processes, at most two per worker in flight,
each written as soon as it is done; a killed prepare redoes only the units without a marker.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain import __version__
from lmtrain.data.corpus import Corpus, Source
from lmtrain.data.datasets import DataPaths, DatasetSpec
from lmtrain.data.formats import CorpusFile
from lmtrain.data.holdout import Bands
from lmtrain.data.progress import PrepareProgress
from lmtrain.data.shards import FORMAT, PreparedSplit, ShardWriter, partial_folder, read_prepared
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.units import Job, UnitResult, plan_units, run_job, splitter
from lmtrain.errors import DataError
from lmtrain.files import exclusive_lock

BLOCK_BYTES = 4 << 20
"""Input bytes per unit (and shard): small enough to spread a small corpus over the cores and bound memory."""
IN_PROCESS_BYTES = 8 << 20
"""Sources smaller than this are tokenized in this process (a pool costs more than it saves)."""
LOCKS = "locks"
"""Folder of the cache holding a lock file per prepared source (empty files, taken while it is prepared)."""


@dataclass(frozen=True)
class PrepareResult:
    """What preparing one source did: its prepared splits, whether they were cached, and the work done."""

    splits: Mapping[str, PreparedSplit]
    source: Source
    cached: bool
    seconds: float
    units: int = 0
    reused_units: int = 0

    @property
    def folder(self) -> Path:
        return next(iter(self.splits.values())).folder


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def file_digest(file: CorpusFile) -> dict[str, Any]:
    """sha256 and size of an input (every file of a `datasets` folder or split), read in 16 MB pieces."""
    path = file.path / file.member if file.member and (file.path / file.member).is_dir() else file.path
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest, size = hashlib.sha256(), 0
    for f in files:
        with open(f, "rb") as handle:
            while chunk := handle.read(16 << 20):
                digest.update(chunk)
                size += len(chunk)
    return {
        "sha256": digest.hexdigest(),
        "bytes": size,
        "format": file.format,
        "compression": file.compression,
        "member": file.member,
    }


PARENT_CHECK_S = 0.5
"""How often a worker checks that the process that started it is alive."""


def _exit_with_parent(parent: int) -> None:
    """End this worker (without clean-up: its work is lost with its parent) once `parent` is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _worker_setup(parent: int) -> None:
    """In each worker: Ctrl-C is the parent's to handle, one core, and an exit when the parent (`parent`, its pid as
    the parent gave it: a worker that starts after its parent died must not watch the process that adopted it) dies
    however it dies (kill -9 and the out-of-memory killer leave no chance to shut the pool down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker: HF tokenizers would otherwise use them all
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


def run_jobs(jobs: Iterable[Job], workers: int) -> Iterator[UnitResult]:
    """Results of `jobs` as they finish (in this process when workers is 1), at most 2 per worker in flight."""
    if workers <= 1:
        yield from map(run_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_setup, initargs=(os.getpid(),))
    pending: set[Future[UnitResult]] = set()
    try:
        for job in jobs:
            pending.add(pool.submit(run_job, job))
            while len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """How to prepare: the text field of JSON/parquet inputs, processes, bytes per unit, --force, progress lines."""

    text_field: str = "text"
    workers: int | None = None
    block_bytes: int = BLOCK_BYTES
    force: bool = False
    log: Callable[[str], None] | None = None


def assignment(source: Source, *, text_field: str, block_bytes: int, workers: int) -> str | Bands:
    """Where a source's documents go: the one split of a split's files, or the hash bands of a pool (every document
    hashed first, on `workers` processes, when a split takes a number of documents)."""
    if source.split is not None:
        return source.split
    holdout = source.holdout
    assert holdout is not None
    if not holdout.counts_documents:
        return holdout.bands()
    units = plan_units(source.files, kind=source.kind, text_field=text_field, block_bytes=block_bytes, lead_of=None)
    jobs = (Job(unit=u, kind=source.kind, text_field=text_field, seed=holdout.seed) for u in units)
    hashes = [r.hashes for r in run_jobs(jobs, workers) if r.hashes is not None]
    return holdout.bands(np.concatenate(hashes) if hashes else np.empty(0, np.uint64))


def prepare_source(
    spec: DatasetSpec, source: Source, tokenizer: Tokenizer, cache_dir: Path, options: PrepareOptions
) -> PrepareResult:
    """Tokenize `source` into the cache, or reuse an identical earlier result."""
    t0 = time.perf_counter()
    digests = [file_digest(f) for f in source.files]
    if not any(d["bytes"] for d in digests):
        raise DataError(f"{', '.join(f.describe() for f in source.files)}: empty; the corpus needs text")
    reads_fields = any(f.format != "text" for f in source.files)
    identity = {
        "format": FORMAT,
        "kind": source.kind,
        "files": digests,
        "text_field": options.text_field if reads_fields else None,
        "split": source.split,
        "holdout": source.holdout.to_json() if source.holdout else None,
        "tokenizer": tokenizer.fingerprint(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    label = source.split or "pool"
    folder = cache_dir / "prepared" / spec.name / f"{label}-{key[:16]}-{tokenizer.cache_id()}"
    existing = None if options.force else read_prepared(folder)
    if existing is not None:
        return PrepareResult(existing, source, True, time.perf_counter() - t0)
    lock = cache_dir / LOCKS / f"prepare-{spec.name}-{folder.name}.lock"

    def waiting() -> None:
        if options.log is not None:
            options.log(f"prepare {spec.name} {label}: another process is preparing the same data; waiting for it")

    with exclusive_lock(lock, waiting):  # one prepare of a source at a time: the others then read its result
        existing = None if options.force else read_prepared(folder)
        if existing is not None:
            return PrepareResult(existing, source, True, time.perf_counter() - t0)
        return _prepare_locked(
            spec, source, tokenizer, options, folder=folder, key=key, digests=digests, identity=identity, t0=t0
        )


def _prepare_locked(
    spec: DatasetSpec,
    source: Source,
    tokenizer: Tokenizer,
    options: PrepareOptions,
    *,
    folder: Path,
    key: str,
    digests: Sequence[Mapping[str, Any]],
    identity: Mapping[str, Any],
    t0: float,
) -> PrepareResult:
    """Tokenize `source` into `folder`, holding its lock: units a killed prepare finished are kept."""
    label = source.split or "pool"
    workers = options.workers or default_workers()
    if options.force:
        shutil.rmtree(partial_folder(folder), ignore_errors=True)
    total = sum(d["bytes"] for d in digests)
    workers = 1 if total < IN_PROCESS_BYTES and options.block_bytes == BLOCK_BYTES else workers

    try:
        assign = assignment(source, text_field=options.text_field, block_bytes=options.block_bytes, workers=workers)
        plan = {"key": key, "block_bytes": options.block_bytes, "bands": repr(assign)}
        writer = ShardWriter(folder, tokenizer.dtype, plan)
        progress = PrepareProgress(f"prepare {spec.name} {label}", total, options.log)
        units = plan_units(
            source.files,
            kind=source.kind,
            text_field=options.text_field,
            block_bytes=options.block_bytes,
            lead_of=splitter(assign),
        )
        planned = 0  # units read so far; the finished ones a killed prepare left are not redone

        def unfinished() -> Iterator[Job]:
            nonlocal planned
            for unit in units:
                planned = unit.index + 1
                if writer.done(unit.index) is not None:
                    progress.advance(unit.input_bytes)
                    continue
                yield Job(
                    unit=unit, kind=source.kind, text_field=options.text_field, tokenizer=tokenizer, assign=assign
                )

        done = 0
        try:
            for result in run_jobs(unfinished(), workers):
                writer.write(result)
                progress.advance(result.input_bytes)
                done += 1
        finally:
            progress.close()
        totals = writer.gather(planned, source.splits)
        _check_splits(totals, source)
        meta = {
            "format": FORMAT,
            "lmtrain_version": __version__,
            "dataset": spec.name,
            "documents_kind": source.kind,
            "source": {"files": [{"path": str(f.describe()), **d} for f, d in zip(source.files, digests)], "key": key},
            "text_field": identity["text_field"],
            "holdout": identity["holdout"],
            "bands": assign.to_json() if isinstance(assign, Bands) else None,
            "tokenizer": tokenizer.fingerprint(),
            "dtype": np.dtype(tokenizer.dtype).name,
            "block_bytes": options.block_bytes,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        for split, info in totals.items():
            info["identity"] = _identity(source, digests, key, split)
        writer.finish(totals, meta)
    except DataError:
        shutil.rmtree(partial_folder(folder), ignore_errors=True)  # bad input: nothing of it is worth keeping
        raise
    prepared = read_prepared(folder)
    if prepared is None:
        raise DataError(f"prepared data in {folder} could not be read back; delete it and run prepare again")
    return PrepareResult(prepared, source, False, time.perf_counter() - t0, units=planned, reused_units=planned - done)


def _identity(source: Source, digests: Sequence[Mapping[str, Any]], key: str, split: str) -> str:
    """A split's identity: the file's sha256 for a split that is one file (as lmtrain 0.2 recorded it), else a hash
    of the prepared source's key and the split."""
    if source.split is not None and len(digests) == 1:
        return str(digests[0]["sha256"])
    return hashlib.sha256(f"{key}:{split}".encode()).hexdigest()


def _check_splits(totals: Mapping[str, Mapping[str, Any]], source: Source) -> None:
    """Every split the source writes must hold text."""
    docs = sum(info["documents"] for info in totals.values())
    for split, info in totals.items():
        if info["tokens"]:
            continue
        where = ", ".join(f.describe() for f in source.files[:3]) + (" ..." if len(source.files) > 3 else "")
        if docs == 0:
            raise DataError(f"{where}: no text (every document is empty); the corpus needs text")
        if split == "train":
            raise DataError(f"{where}: every one of the {docs:,} documents was held out; hold out fewer")
        take = next(t for t in source.holdout.takes if t.split == split) if source.holdout else None
        raise DataError(
            f"{where}: holding out {take.describe() if take else 'documents'} of {docs:,} left the {split} split "
            f"empty; pass --{split}-docs N (or add {split} files)"
        )


def prepare_corpus(
    spec: DatasetSpec, corpus: Corpus, paths: DataPaths, tokenizer: Tokenizer, options: PrepareOptions
) -> dict[str, tuple[PreparedSplit, PrepareResult]]:
    """Prepare every source of the corpus once; (prepared split, its source's result) keyed by split."""
    done: dict[Source, PrepareResult] = {}
    out = {}
    for split, source in corpus.sources.items():
        if source not in done:
            done[source] = prepare_source(spec, source, tokenizer, paths.cache_dir, options)
        out[split] = (done[source].splits[split], done[source])
    return out


def prepare_file(
    spec: DatasetSpec, split: str, path: Path, tokenizer: Tokenizer, cache_dir: Path, *, options: PrepareOptions
) -> PrepareResult:
    """Prepare one text file of a known split (a registered dataset's split file)."""
    source = Source((CorpusFile(path, "text"),), spec.documents, split)
    return prepare_source(spec, source, tokenizer, cache_dir, options)
