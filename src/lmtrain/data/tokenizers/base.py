"""What every tokenizer offers (`Tokenizer`): ids to and from text, the end-of-document id, a fingerprint.

Text is always encoded as ordinary text: the string "<|endoftext|>" inside a document is plain characters, never the
end-of-document id. That id is inserted only between documents.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.errors import DataError

EOT_TEXT = "<|endoftext|>"
"""GPT-2's end-of-text token, the end-of-document token of lmtrain's own tokenizers and of most others."""
TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""Special tokens that end a chat turn (ChatML's, Llama-3's, Phi's, Gemma's): never the end of a document."""
END_MARKERS = (EOT_TEXT, *TURN_ENDS, "<|end_of_text|>", "</s>", "<eos>")
"""Special tokens that end a turn or a text in the released chat models' vocabularies: generation stops at any."""


@dataclass(frozen=True)
class BPEVocab:
    """A byte-level BPE as llama.cpp reads it from a GGUF file: tokens, which are special, merges, the cut."""

    tokens: list[str | None]
    """Token of each id, in the byte-level alphabet (added tokens as their text; None: no token has the id)."""
    special: frozenset[int]
    """Ids of the special (control) tokens."""
    merges: list[str]
    """The merges in order, each "left right"."""
    pre: str
    """How text is cut before merging: llama.cpp's pre-tokenizer name (`pretokenizers.py`)."""
    user_defined: frozenset[int] = frozenset()
    """Ids of added tokens that are not special (always matched whole in text)."""
    ignore_merges: bool = False
    """Whether a piece found whole in the vocabulary is taken as one token before any merge (Llama-3's BPE)."""


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

    @property
    def eos_id(self) -> int:
        """The end the model's released configuration names (transformers' eos_token, GGUF's eos_token_id): for a
        chat model its end-of-turn token, which export writes back as it was; else the end-of-document token."""
        return self.eot_id

    @property
    def add_bos(self) -> bool:
        """Whether a prompt starts with `bos_id` (what llama.cpp's add_bos_token says): yes, as every document of the
        training stream follows the end-of-document token."""
        return True

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

    def encode_rendered(self, text: str) -> list[int]:
        """Token ids of text in which the tokenizer's special-token strings stand for their ids (a prompt rendered
        with a chat template); ordinary text is encoded as `encode` does."""
        raise DataError(f"{self.describe()} has no special tokens to render a chat template with")

    def save(self, folder: Path) -> list[str]:
        """Write the files that rebuild this tokenizer anywhere into `folder` (a run's or a checkpoint's copy,
        `carry.py`); the names written (none for a tokenizer its fingerprint names, GPT-2's)."""
        return []

    def save_hf(self, folder: Path, max_len: int) -> list[str]:
        """Write the tokenizer as transformers' AutoTokenizer loads it into `folder`; the names written."""
        raise DataError(f"{self.describe()} cannot be written as a transformers tokenizer")

    def bpe_vocab(self) -> BPEVocab:
        """The tokenizer as the byte-level BPE llama.cpp reads from a GGUF file; a DataError naming what does not
        fit when it is not one."""
        raise DataError(f"{self.describe()} is not a byte-level BPE with merges, which is what llama.cpp reads")

    @property
    def stop_ids(self) -> frozenset[int]:
        """The ids generation stops at: the end of document, and any special end-of-turn or end-of-text token the
        vocabulary has (`END_MARKERS`)."""
        return frozenset({self.eot_id})

    def special_id(self, text: str) -> int | None:
        """The id of the special token `text` (`<|im_end|>`), None where the vocabulary has no such special token."""
        return self.eot_id if text == EOT_TEXT else None

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template that renders conversations for this tokenizer's model (None: none)."""
        return None

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


def write_json(path: Path, content: dict[str, Any]) -> None:
    """`content` as indented JSON with a final newline."""
    path.write_text(json.dumps(content, indent=2) + "\n")


def file_fingerprint(tokenizer: Tokenizer, kind: str, **identity: object) -> dict[str, object]:
    """A file-based tokenizer's fingerprint: name, kind, size, end-of-document id, and what identifies its files."""
    return {
        "name": tokenizer.name,
        "kind": kind,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        **identity,
    }
