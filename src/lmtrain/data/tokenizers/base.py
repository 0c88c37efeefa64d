"""What every tokenizer offers (`Tokenizer`): ids to and from text, the end-of-document id, a fingerprint.

Text is always encoded as ordinary text: the string "<|endoftext|>" inside a document is plain characters, never the
end-of-document id. That id is inserted only between documents.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

EOT_TEXT = "<|endoftext|>"
"""GPT-2's end-of-text token, the end-of-document token of lmtrain's own tokenizers and of most others."""


class Tokenizer(ABC):
    """Encode text to ids and decode ids to text; `eot_id` ends a document. Pickles by what rebuilds it."""

    name: str
    eot_id: int
    vocab_size: int
    """Ids are 0 .. vocab_size - 1."""

    @abstractmethod
    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as a uint32 array, special-token strings treated as ordinary text."""

    @property
    def bos_id(self) -> int:
        """The beginning-of-sequence id put in front of a prompt: the end-of-document token, which stands before
        every document of the training stream (a tokenizer with a separate beginning token overrides it)."""
        return self.eot_id

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special-token strings treated as ordinary text."""
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode_array` of each text."""
        return [self.encode_array(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD."""

    @abstractmethod
    def fingerprint(self) -> dict[str, object]:
        """What identifies this tokenizer in prepared data and checkpoints (JSON)."""

    def files(self) -> dict[str, Path]:
        """The files a run carries so that it can rebuild this tokenizer anywhere ({name in the copy: path})."""
        return {}

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """Smallest unsigned type that holds every id: uint16 up to 65,536 ids, else uint32."""
        return np.uint16 if self.vocab_size <= 1 << 16 else np.uint32

    def describe(self) -> str:
        """One line for logs."""
        return f"{self.name} ({self.vocab_size:,} ids, end of document {self.eot_id})"

    def cache_id(self) -> str:
        """Short stable id of the fingerprint, used in cache folder names."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return f"{self.name.split(':')[0]}-{hashlib.sha256(blob).hexdigest()[:8]}"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a tokenizer file (what its fingerprint names it by)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_fingerprint(tokenizer: Tokenizer, kind: str, **identity: object) -> dict[str, object]:
    """A file-based tokenizer's fingerprint: name, kind, size, end-of-document id, and what identifies its files."""
    return {
        "name": tokenizer.name,
        "kind": kind,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        **identity,
    }
