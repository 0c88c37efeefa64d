"""Units of work: a corpus is read as a stream of pieces of about `block_bytes` each (a piece of a text or JSON lines
file cut at a document start, parquet row groups, rows of a `datasets` split), and each piece is tokenized on its own
(`encode_unit`, in a worker process) into one shard per split.

A text document longer than a piece is cut at a line start where the cut changes no token (`formats.safe_break`);
its pieces stay one document (no end-of-document id between them) in the split its first piece's hash chose.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmtrain.data.datasets import Documents
from lmtrain.data.documents import TextCounts, count_text
from lmtrain.data.formats import (
    CorpusFile,
    Document,
    json_documents,
    last_cut,
    missing_field_hint,
    open_binary,
    parquet_documents,
    parquet_file,
    safe_break,
    text_documents,
)
from lmtrain.data.holdout import Bands, doc_hash
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import DATA_EXTRA, DataError

LONGEST_PIECE = 4
"""A text document is cut into pieces once it is this many blocks long."""


@dataclass(frozen=True)
class Unit:
    """One piece of one input file."""

    index: int
    file: CorpusFile
    input_bytes: int
    """How far this piece moves through the input files (compressed bytes for a compressed file): the progress."""
    data: bytes | None = None
    """Text or JSON: the (decompressed) bytes of the piece."""
    first_line: int = 1
    continues: str | None = None
    """Text: the split of the document this piece continues (its first bytes are not a new document)."""
    whole_file: bool = False
    groups: tuple[int, ...] = ()
    """Parquet: the row groups of the piece."""
    rows: tuple[int, int] = (0, 0)
    """datasets: rows [start, stop) of the split."""


@functools.lru_cache(maxsize=2)
def _dataset(path: str, member: str | None):  # -> datasets.Dataset
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(
            f"{path} is a Hugging Face datasets folder; reading it needs `datasets`: {DATA_EXTRA}"
        ) from None
    loaded = datasets.load_from_disk(path)
    return loaded[member] if member is not None else loaded


def _dataset_units(file: CorpusFile, field_name: str, block_bytes: int, start: int) -> Iterator[Unit]:
    ds = _dataset(str(file.path), file.member)
    if field_name not in ds.column_names:
        names = ", ".join(ds.column_names[:8])
        hint = missing_field_hint(ds.column_names)
        raise DataError(f"{file.describe()} has no column {field_name!r} (its columns: {names}); {hint}")
    rows = len(ds)
    size = sum(Path(f["filename"]).stat().st_size for f in ds.cache_files) or rows
    per_unit = max(1, int(rows * block_bytes / max(size, 1)))
    for i, first in enumerate(range(0, rows, per_unit)):
        stop = min(rows, first + per_unit)
        yield Unit(start + i, file, size * (stop - first) // max(rows, 1), rows=(first, stop))


def _parquet_units(file: CorpusFile, field_name: str, block_bytes: int, start: int) -> Iterator[Unit]:
    meta = parquet_file(file.path, field_name).metadata
    groups: list[int] = []
    size = 0
    index = start
    for g in range(meta.num_row_groups):
        groups.append(g)
        size += meta.row_group(g).total_byte_size
        if size >= block_bytes or g == meta.num_row_groups - 1:
            yield Unit(index, file, size, groups=tuple(groups))
            index, groups, size = index + 1, [], 0


def _stream_units(
    file: CorpusFile, kind: Documents, block_bytes: int, start: int, lead_of: Callable[[bytes], str] | None
) -> Iterator[Unit]:
    """Pieces of a text or JSON file, each ending where a document (record) starts, or at a safe break inside one."""
    stream, raw = open_binary(file)
    index, line, consumed = start, 1, 0
    pending = b""
    continues: str | None = None
    whole = file.format == "json"
    try:
        while True:
            try:
                block = stream.read(block_bytes if not whole else -1)
            except (OSError, EOFError, ValueError) as exc:
                raise DataError(
                    f"{file.path} cannot be decompressed ({exc}); the file is damaged or truncated"
                ) from None
            at_end = not block
            pending += block
            if at_end:
                cut = len(pending)
            elif whole or len(pending) < block_bytes:
                continue
            else:
                cut = last_cut(pending, file.format, kind)
            opened = None
            if cut == 0 and len(pending) >= LONGEST_PIECE * block_bytes and file.format == "text":
                cut = safe_break(pending)
                if cut:
                    doc_start = last_cut(pending[:cut], "text", kind)
                    if doc_start or continues is None:
                        opened = lead_of(pending[doc_start:cut]) if lead_of is not None else "train"
                    else:
                        opened = continues
            if cut:
                piece, pending = pending[:cut], pending[cut:]
                position = raw.tell()
                yield Unit(
                    index, file, position - consumed, data=piece, first_line=line, continues=continues, whole_file=whole
                )
                index, consumed = index + 1, position
                line += piece.count(b"\n")
                continues = opened
            if at_end:
                return
    finally:
        stream.close()
        raw.close()


def plan_units(
    files: Sequence[CorpusFile],
    *,
    kind: Documents,
    text_field: str,
    block_bytes: int,
    lead_of: Callable[[bytes], str] | None,
) -> Iterator[Unit]:
    """The units of `files` in order, numbered from 0; `lead_of` gives the split of a document cut into pieces from
    its first piece (None: the split does not matter, e.g. when only hashing)."""
    index = 0
    for file in files:
        if file.format == "parquet":
            units = _parquet_units(file, text_field, block_bytes, index)
        elif file.format == "datasets":
            units = _dataset_units(file, text_field, block_bytes, index)
        else:
            units = _stream_units(file, kind, block_bytes, index, lead_of)
        for unit in units:
            yield unit
            index = unit.index + 1


def unit_documents(unit: Unit, kind: Documents, text_field: str) -> Iterator[Document]:
    """The documents of a unit (the first one continued from the previous unit when `unit.continues`)."""
    file = unit.file
    if file.format == "text":
        assert unit.data is not None
        yield from text_documents(
            unit.data, kind=kind, where=str(file.path), first_line=unit.first_line, continued=unit.continues is not None
        )
    elif file.format in ("jsonl", "json"):
        assert unit.data is not None
        yield from json_documents(
            unit.data, field=text_field, where=str(file.path), first_line=unit.first_line, whole_file=unit.whole_file
        )
    elif file.format == "parquet":
        yield from parquet_documents(file.path, list(unit.groups), text_field)
    else:
        column = _dataset(str(file.path), file.member)[unit.rows[0] : unit.rows[1]][text_field]
        for value in column:
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{file.describe()}: column {text_field!r} holds {type(value).__name__} values")
            yield Document(value, value.encode("utf-8"), file.describe())


@dataclass
class SplitPart:
    """What a unit wrote for one split: tokens (documents joined by the end-of-document id), counts."""

    tokens: list[np.ndarray] = field(default_factory=list)
    documents: int = 0
    counts: TextCounts = TextCounts(0, 0, 0)
    continued: bool = False
    """The first tokens continue the previous unit's last document of this split."""


def splitter(assign: str | Bands) -> Callable[[bytes], str]:
    """The split of a document's bytes: the pool's hash bands, or every document in the one split."""
    return assign.split_of if isinstance(assign, Bands) else lambda raw: assign


def doc_split(doc: Document, unit: Unit, split_of: Callable[[bytes], str]) -> str:
    """The split of one of a unit's documents: a continued document stays where its first piece went."""
    if doc.continued:
        assert unit.continues is not None
        return unit.continues
    return split_of(doc.raw)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A unit and what to do with it: encode (into splits by `assign`) or, without a tokenizer, hash its documents."""

    unit: Unit
    kind: Documents
    text_field: str
    tokenizer: Tokenizer | None = None
    assign: str | Bands | None = None
    seed: int = 0


@dataclass(frozen=True)
class UnitResult:
    """What a job returns: per split, the unit's part (encoding); or its documents' hashes (hashing)."""

    index: int
    input_bytes: int
    parts: dict[str, SplitPart]
    hashes: np.ndarray | None = None


def run_job(job: Job) -> UnitResult:
    """Hash (tokenizer None) or encode the job's unit."""
    docs = (d for d in unit_documents(job.unit, job.kind, job.text_field) if d.raw)
    if job.tokenizer is None:
        hashes = np.fromiter((doc_hash(d.raw, job.seed) for d in docs if not d.continued), dtype=np.uint64)
        return UnitResult(job.unit.index, job.unit.input_bytes, {}, hashes)
    assert job.assign is not None
    split_of = splitter(job.assign)
    parts: dict[str, SplitPart] = {}
    eot = np.array([job.tokenizer.eot_id], dtype=np.uint32)
    for doc in docs:
        split = doc_split(doc, job.unit, split_of)
        part = parts.setdefault(split, SplitPart(continued=doc.continued))
        if part.tokens and not doc.continued:
            part.tokens.append(eot)
        part.tokens.append(job.tokenizer.encode_array(doc.text))
        part.documents += 0 if doc.continued else 1
        part.counts = part.counts + count_text(doc.raw)
    return UnitResult(job.unit.index, job.unit.input_bytes, parts)
