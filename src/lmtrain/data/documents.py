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

HEADING = re.compile(rb"\n = (?!=)[^\n]*[^=\n] = \r?\n")
"""A WikiText article heading: the line ` = Title = ` (the newline before it included; the article starts after it)."""
SEPARATOR = re.compile(rb"^<\|endoftext\|>\r?(?:\n|\Z)", re.MULTILINE)
"""A line holding only <|endoftext|>, between two plain-text documents (the last line of a file may lack its
newline)."""
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.split() splits on


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


def boundaries(data: bytes | memoryview, kind: Documents, *, complete: bool = True) -> list[tuple[int, int]]:
    """(end of one document, start of the next) at each boundary in `data`: a WikiText heading starts an article (an
    empty span at the heading line); a separator line lies between two text documents and belongs to neither. With
    `complete=False`, `data` is a piece of a longer stream: a separator on its unfinished last line may go on in the
    next piece, so it is not one yet."""
    if kind == "wikitext":
        return [(m.start() + 1, m.start() + 1) for m in HEADING.finditer(data)]
    if kind != "text":
        raise ValueError(f"unknown document kind {kind!r}")
    found = [(m.start(), m.end()) for m in SEPARATOR.finditer(data)]
    if found and not complete and not bytes(data[found[-1][0] : found[-1][1]]).endswith(b"\n"):
        found.pop()
    return found


def document_ranges(data: bytes | memoryview, kind: Documents) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of the documents in `data`; empty documents are dropped."""
    cuts = boundaries(data, kind)
    if kind == "wikitext" and cuts and not bytes(data[: cuts[0][0]]).strip():
        del cuts[0]  # only blank lines before the first heading: they open the first article
    starts = [0] + [start for _, start in cuts]
    ends = [end for end, _ in cuts] + [len(data)]
    return [(s, e) for s, e in zip(starts, ends) if e > s]
