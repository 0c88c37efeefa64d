"""The corpus file formats: which files are read, how each is opened (decompressed) and how a piece of one is cut
into documents.

- text (`.txt .text .md .rst .raw .tokens`): documents separated by lines holding only `<|endoftext|>` (WikiText:
  documents start at article headings); a file without separators is one document.
- JSON lines (`.jsonl .ndjson`, and `.json` files that are not one array): one document per record, its
  `--text-field` (default `text`); `.json` holding one array: one document per element.
- parquet (`.parquet`): one document per row of the `--text-field` column, read with pyarrow.
- any of these compressed: `.gz`, `.bz2`, `.xz`, `.zst`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from lmtrain.data.datasets import Documents
from lmtrain.data.documents import boundaries, document_ranges
from lmtrain.errors import DATA_EXTRA, DataError

Format = Literal["text", "jsonl", "json", "parquet", "datasets"]
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".raw", ".tokens")
SUFFIXES: dict[str, Format] = {
    **{s: "text" for s in TEXT_SUFFIXES},
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


@dataclass(frozen=True)
class CorpusFile:
    """One input of a corpus: a file (or a split of a `datasets` folder) and how to read it."""

    path: Path
    format: Format
    compression: str | None = None
    member: str | None = None
    """The split of a `datasets` folder (None: the folder is one Dataset)."""

    def describe(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else str(self.path)


def file_format(path: Path) -> tuple[Format, str | None] | None:
    """(format, compression) a file's name says, or None when lmtrain does not read such files."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    if not suffixes or suffixes[-1] not in SUFFIXES:
        return None
    fmt = SUFFIXES[suffixes[-1]]
    if fmt == "parquet" and compression is not None:
        return None  # parquet compresses inside the file
    return fmt, compression


def open_binary(file: CorpusFile) -> tuple[IO[bytes], IO[bytes]]:
    """(decompressed stream, the raw file under it: its position is the progress through the file)."""
    raw = open(file.path, "rb")  # noqa: SIM115 - returned to the caller, who closes both
    kind = file.compression
    if kind is None:
        return raw, raw
    if kind == ".gz":
        return gzip.GzipFile(fileobj=raw), raw
    if kind == ".bz2":
        return bz2.BZ2File(raw), raw
    if kind == ".xz":
        return lzma.LZMAFile(raw), raw
    try:
        import zstandard
    except ModuleNotFoundError:
        raw.close()
        raise DataError(
            f"{file.path} is zstd-compressed; reading it needs the zstandard package: {DATA_EXTRA}"
        ) from None
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw)), raw


_SAFE_BREAK = re.compile(rb"(?<=[^\s])\n(?=[^\s])")


def last_cut(data: bytes, fmt: Format, kind: Documents) -> int:
    """The last position in `data` where a document (JSON lines: a record) starts, or 0 when none does."""
    if fmt == "jsonl":
        return data.rfind(b"\n") + 1
    cuts = boundaries(data, kind, complete=False)
    return cuts[-1][1] if cuts else 0


def safe_break(data: bytes) -> int:
    """The last line start inside a document where cutting it changes no token: a newline with non-space bytes on
    both sides (GPT-2-style pre-tokenizers never join such a newline with its neighbours); 0 when there is none."""
    found = 0
    window = data[-(1 << 20) :]
    for m in _SAFE_BREAK.finditer(window):
        found = m.end()
    return found + len(data) - len(window) if found else 0


@dataclass(frozen=True)
class Document:
    """One document's text, where it came from (for errors), and whether it continues one begun earlier."""

    text: str
    raw: bytes
    where: str
    continued: bool = False


def decode(raw: bytes, where: str, base_line: int) -> str:
    """`raw` as UTF-8; an undecodable byte is a DataError naming the file and line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = base_line + raw.count(b"\n", 0, exc.start)
        raise DataError(
            f"{where}:{line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); convert the file to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None


def text_documents(data: bytes, *, kind: Documents, where: str, first_line: int, continued: bool) -> Iterator[Document]:
    """The documents of a piece of a text file that starts at a document start (or continues one: `continued`)."""
    line, position = first_line, 0
    for index, (start, end) in enumerate(document_ranges(data, kind)):
        line += data.count(b"\n", position, start)
        raw = data[start:end]
        yield Document(decode(raw, where, line), raw, where, continued and index == 0 and start == 0)
        line += raw.count(b"\n")
        position = end


CONVERSATION_FIELDS = ("messages", "conversations", "prompt")
"""Fields of the conversation layouts (`data/chat/conversations.py`): a text corpus holding them is conversations."""


def missing_field_hint(names: list[str]) -> str:
    """How to go on when the text field is missing: --dataset chat for conversations, else --text-field."""
    if any(name in names for name in CONVERSATION_FIELDS):
        return "these are conversations: train on them with --dataset chat"
    return "pass --text-field NAME"


def record_text(record: object, field: str, where: str) -> str:
    """The `field` of a JSON record, which must be a string."""
    if not isinstance(record, dict):
        raise DataError(f"{where} is a JSON {type(record).__name__}, not an object with a {field!r} field")
    if field not in record:
        keys = ", ".join(list(record)[:8]) or "none"
        raise DataError(f"{where} has no {field!r} field (its fields: {keys}); {missing_field_hint(list(record))}")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is a {type(value).__name__}, not a string")
    return value


def json_records(
    data: bytes, *, where: str, first_line: int = 1, whole_file: bool = True
) -> Iterator[tuple[object, str]]:
    """(record, where it is: `file:line` or `file element N`) of each record of JSON lines, or of a `.json` file
    holding one array (`whole_file`: `data` is the whole file); a line that is not JSON is a DataError naming it."""
    if whole_file and data.lstrip()[:1] == b"[":
        try:
            records = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{where} is not valid JSON ({exc}); fix the file or use JSON lines") from None
        for i, record in enumerate(records):
            yield record, f"{where} element {i}"
        return
    for number, line in enumerate(data.split(b"\n"), first_line):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except UnicodeDecodeError:
            decode(line, where, number)
            raise
        except ValueError as exc:
            raise DataError(
                f"{where}:{number} is not valid JSON ({exc.args[0][:80]}); fix or remove that line"
            ) from None
        yield record, f"{where}:{number}"


def json_documents(data: bytes, *, field: str, where: str, first_line: int, whole_file: bool) -> Iterator[Document]:
    """One document per record of JSON lines (or of a `.json` file holding one array)."""
    for record, place in json_records(data, where=where, first_line=first_line, whole_file=whole_file):
        text = record_text(record, field, place)
        yield Document(text, text.encode("utf-8"), where)


def open_parquet(path: Path):  # -> pyarrow.parquet.ParquetFile
    """The open parquet file; a DataError when pyarrow is missing or the file is not parquet."""
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DataError(f"reading {path} needs pyarrow: {DATA_EXTRA}") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(f"{path} is not a readable parquet file ({str(exc)[:100]})") from None


def parquet_file(path: Path, field: str):  # -> pyarrow.parquet.ParquetFile
    """The open parquet file, checked to hold a string column `field`."""
    handle = open_parquet(path)
    names = handle.schema_arrow.names
    if field not in names:
        hint = missing_field_hint(names)
        raise DataError(f"{path} has no column {field!r} (its columns: {', '.join(names[:8])}); {hint}")
    return handle


def parquet_documents(path: Path, groups: list[int], field: str) -> Iterator[Document]:
    """One document per row of column `field` in the given row groups (null rows skipped)."""
    handle = parquet_file(path, field)
    for group in groups:
        column = handle.read_row_group(group, columns=[field]).column(0)
        for value in column.to_pylist():
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}: column {field!r} holds {type(value).__name__} values, not strings")
            yield Document(value, value.encode("utf-8"), str(path))
