"""A GGUF file (llama.cpp's format) read safely: known by its magic bytes, never by its name; a file that is not GGUF,
is truncated or is damaged is a one-line CheckpointError, never a traceback.

The container (header, metadata, tensor records) is parsed here, in one pass over a memory map: the `gguf` package's
reader takes seconds to build its per-item views of a 49,152-token vocabulary, which every process that opens the
tokenizer would pay. The numerics of each tensor type (dequantizing, quantizing) are the `gguf` package's. Shared by the
tokenizer a GGUF file carries (`data/tokenizers/gguf_vocab.py`) and the model it carries (`interop/gguf/`).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.errors import CheckpointError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
"""GGUF value type -> struct format (8 is a string, 9 an array)."""
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with GGUF's magic bytes."""
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a GGUF file: its name, GGML type, shape (PyTorch order: rows first) and bytes in the file."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    offset: int
    """Start of its data, from the file's start."""
    nbytes: int


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF file's metadata (Python values by key) and its tensors (read on demand from a memory map)."""

    path: Path
    fields: dict[str, Any]
    tensors: dict[str, TensorRecord]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of metadata `key`, or `default`."""
        return self.fields.get(key, default)

    def require(self, key: str) -> Any:
        """The value of metadata `key`; a missing one is a CheckpointError naming it."""
        if key not in self.fields:
            raise CheckpointError(f"{self.path} lacks the GGUF key {key}, which every model of its kind has")
        return self.fields[key]

    def raw(self, record: TensorRecord) -> np.ndarray:
        """The tensor's bytes (uint8, a read-only view of the file)."""
        return np.memmap(self.path, dtype=np.uint8, mode="r", offset=record.offset, shape=(record.nbytes,))


class _Cursor:
    """Reads GGUF's little-endian values from a buffer, front to back."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("a string runs past the end of the file")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="surrogateescape")
        self.pos += n
        return text

    def value(self, kind: int) -> Any:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            inner, count = self.scalar("<I"), self.scalar("<Q")
            if inner == STRING:
                return [self.string() for _ in range(count)]
            if inner == ARRAY:
                return [self.value(ARRAY) for _ in range(count)]
            dtype = np.dtype(_NUMPY[inner])
            end = self.pos + count * dtype.itemsize
            if end > len(self.buf):
                raise ValueError("an array runs past the end of the file")
            values = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).tolist()
            self.pos = end
            return values
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.scalar(_SCALARS[kind])


def _parse(buf: Any) -> tuple[dict[str, Any], list[tuple[str, int, tuple[int, ...], int]], int]:
    """(metadata, [(name, type, GGML dims, offset)], data start) of a GGUF file's bytes."""
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.scalar("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version}; lmtrain reads versions 2 and 3")
    n_tensors, n_fields = cur.scalar("<Q"), cur.scalar("<Q")
    fields: dict[str, Any] = {}
    for _ in range(n_fields):
        key = cur.string()
        fields[key] = cur.value(cur.scalar("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = tuple(cur.scalar("<Q") for _ in range(cur.scalar("<I")))
        infos.append((name, cur.scalar("<I"), dims, cur.scalar("<Q")))
    align = int(fields.get("general.alignment", DEFAULT_ALIGNMENT))
    return fields, infos, -(-cur.pos // align) * align


def read_gguf(path: Path) -> GGUFFile:
    """The GGUF file at `path`; not GGUF, truncated or damaged is a CheckpointError that says which."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not is_gguf(path):
        raise CheckpointError(f"{path} is not a GGUF file (it does not start with the bytes GGUF)")
    size = path.stat().st_size
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            fields, infos, start = _parse(buf)
    except (ValueError, struct.error, KeyError, OSError) as exc:
        raise CheckpointError(
            f"{path} is a truncated or damaged GGUF file ({size:,} bytes: {exc}); download or export it again"
        ) from None
    tensors = {}
    for name, kind, dims, offset in infos:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise CheckpointError(
                f"{path}: tensor {name} has GGML type {kind}, which the gguf package does not know; lmtrain cannot "
                f"read it"
            ) from None
        count = int(np.prod(dims)) if dims else 1
        record = TensorRecord(name, kind, tuple(reversed(dims)), start + offset, count // block * type_size)
        if record.offset + record.nbytes > size:
            raise CheckpointError(
                f"{path} is truncated: tensor {name} ends at byte {record.offset + record.nbytes:,} but the file has "
                f"{size:,}; download or export it again"
            )
        tensors[name] = record
    return GGUFFile(path=path, fields=fields, tensors=tensors)
