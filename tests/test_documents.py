"""Cutting text into documents, and the counts behind word-level perplexity."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import SAMPLE, mirror_file
from lmtrain.data.documents import count_text, count_words, document_ranges

WIKI = (
    b" \n = First Article = \n \n Some text about it .\n \n = = Section = = \n \n More text .\n"
    b" = Second = \n \n Body with = signs = inside .\n = X = \n short\n"
)


def _docs(data: bytes, kind: str) -> list[bytes]:
    return [data[s:e] for s, e in document_ranges(data, kind)]


def test_wikitext_documents_start_at_article_headings() -> None:
    docs = _docs(WIKI, "wikitext")
    assert len(docs) == 3
    assert docs[0].startswith(b" \n = First Article = \n") and b"= = Section = =" in docs[0]
    assert docs[1].startswith(b" = Second = \n") and docs[2] == b" = X = \n short\n"
    assert b"".join(docs) == WIKI


def test_text_before_the_first_heading_is_kept_as_a_document() -> None:
    data = b"preamble line\n = Title = \n body\n"
    assert _docs(data, "wikitext") == [b"preamble line\n", b" = Title = \n body\n"]


def test_text_documents_are_separated_by_endoftext_lines() -> None:
    data = b"<|endoftext|>\none\ntwo\n<|endoftext|>\n<|endoftext|>\nthree <|endoftext|> inline\n<|endoftext|>"
    assert _docs(data, "text") == [b"one\ntwo\n", b"three <|endoftext|> inline\n"]
    assert _docs(b"no separators at all\n", "text") == [b"no separators at all\n"]


def test_count_words_equals_bytes_split() -> None:
    rng = random.Random(0)
    alphabet = b"ab \t\n\r\x0b\x0c\xc2\xa0x"
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert count_words(data) == len(data.split())


def test_lines_count_a_last_line_without_newline() -> None:
    assert count_text(b"a b\nc").lines == 2
    assert count_text(b"a b\nc\n").lines == 2
    assert count_text(b"").lines == 0
    assert count_text(b"a b\nc\n").original_tokens == 3 + 2


@pytest.mark.parametrize(
    "name,original_tokens,documents",
    [
        ("wiki.train.raw", 212_483, 50),
        ("wiki.valid.raw", 9_456, 6),
        ("wiki.test.raw", 23_630, 6),
    ],
)
def test_known_counts_of_the_sample(name: str, original_tokens: int, documents: int) -> None:
    data = (SAMPLE / name).read_bytes()
    assert count_text(data).original_tokens == original_tokens
    assert len(document_ranges(data, "wikitext")) == documents


def test_known_counts_of_the_wikitext103_raw_test_split(wikitext103_test_raw: Path) -> None:
    data = wikitext103_test_raw.read_bytes()
    counts = count_text(data)
    assert (counts.lines, counts.words, counts.original_tokens) == (4_358, 241_211, 245_569)
    assert len(document_ranges(data, "wikitext")) == 62


@pytest.mark.parametrize(
    "relative,original_tokens,documents",
    [("wikitext-103/wiki.test.tokens", 245_569, 62), ("wikitext-103/wiki.valid.tokens", 217_646, 60)],
)
def test_known_counts_of_the_tokenized_wikitext103(relative: str, original_tokens: int, documents: int) -> None:
    data = mirror_file(relative).read_bytes()
    assert count_text(data).original_tokens == original_tokens
    assert len(document_ranges(data, "wikitext")) == documents


def test_one_separator_rule_for_whole_files_and_for_pieces_of_them() -> None:
    """The same line rule cuts a whole file into documents and a stream into pieces; only a piece's unfinished last
    line is not a separator yet (it may go on, `<|endoftext|>x`, in the next piece)."""
    from lmtrain.data.formats import last_cut

    data = b"one\n<|endoftext|>\ntwo\n<|endoftext|>"
    assert document_ranges(data, "text") == [(0, 4), (18, 22)]  # a file's last line needs no newline
    assert last_cut(data, "text", "text") == 18
    assert last_cut(data + b"\n", "text", "text") == len(data) + 1
    assert last_cut(b"a\n<|endoftext|>x\nb", "text", "text") == 0  # not a line holding only the token
    wiki = b" = A = \nx\n = B = \ny\n"
    assert last_cut(wiki, "text", "wikitext") == 10 and document_ranges(wiki, "wikitext") == [(0, 10), (10, 20)]
