"""Cut a split's bytes into documents, and count what word-level perplexity needs.

WikiText: a document starts at each article heading, a line ` = Title = ` (one `=` on each side;
` = = Section = = ` lines are inside articles). Anything before the first heading belongs to the
first document, so the documents concatenated are exactly the file.

Plain text: documents are separated by lines holding only `<|endoftext|>`; those lines are not text
and are left out. A file without such lines is one document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lmtrain.data.datasets import Documents

_HEADING = re.compile(rb"\n = (?!=)[^\n]*[^=\n] = \r?\n")
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.split() splits on
_SEPARATOR = re.compile(rb"^<\|endoftext\|>\r?(?:\n|\Z)", re.MULTILINE)


@dataclass(frozen=True)
class TextCounts:
    """Sizes of some text: UTF-8 bytes, lines and whitespace-separated words."""

    bytes: int
    lines: int
    words: int

    @property
    def original_tokens(self) -> int:
        """Words plus one end-of-line per line: the denominator of published word-level perplexity."""
        return self.words + self.lines

    def __add__(self, other: TextCounts) -> TextCounts:
        return TextCounts(self.bytes + other.bytes, self.lines + other.lines, self.words + other.words)


def count_text(data: bytes) -> TextCounts:
    """Bytes, lines (newlines, plus one for a last line without one) and ASCII-whitespace-separated words."""
    lines = data.count(b"\n")
    if data and not data.endswith(b"\n"):
        lines += 1
    return TextCounts(len(data), lines, count_words(data))


def count_words(data: bytes) -> int:
    """Number of maximal runs of non-whitespace bytes; equals len(data.split()) without the list."""
    if not data:
        return 0
    space = _ASCII_SPACE[np.frombuffer(data, dtype=np.uint8)]
    return int(not space[0]) + int(np.count_nonzero(space[:-1] & ~space[1:]))


def document_ranges(data: bytes | memoryview, kind: Documents) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of the documents in `data`; empty documents are dropped."""
    if kind == "wikitext":
        starts = [0] + [m.start() + 1 for m in _HEADING.finditer(data)]
        if len(starts) > 1 and not bytes(data[: starts[1]]).strip():
            del starts[1]  # only blank lines before the first heading: they open the first article
        ends = starts[1:] + [len(data)]
        ranges = list(zip(starts, ends))
    elif kind == "text":
        ranges, start = [], 0
        for m in _SEPARATOR.finditer(data):
            ranges.append((start, m.start()))
            start = m.end()
        ranges.append((start, len(data)))
    else:
        raise ValueError(f"unknown document kind {kind!r}")
    return [(s, e) for s, e in ranges if e > s]
