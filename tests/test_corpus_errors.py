"""Bad corpora: each a one-line error naming what is wrong, exit code 2, nothing left in the cache."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from lmtrain.cli import main


def write_splits(folder: Path, train: bytes, name: str = "train.jsonl") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(train)
    (folder / "valid.jsonl").write_text(json.dumps({"text": "fine"}) + "\n")
    (folder / "test.jsonl").write_text(json.dumps({"text": "fine"}) + "\n")


def parquet_without_text(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.table({"body": ["a", "b"], "id": [1, 2]}), folder / "part.parquet")


CASES = {
    "jsonl line that is not JSON": (
        lambda d: write_splits(d, b'{"text": "ok"}\n{"text": "ok"}\n{"text": broken\n'),
        ["train.jsonl:3 is not valid JSON"],
    ),
    "record without the field": (
        lambda d: write_splits(d, b'{"text": "ok"}\n{"body": "no text field"}\n'),
        ["train.jsonl:2 has no 'text' field (its fields: body)", "--text-field"],
    ),
    "field that is not a string": (
        lambda d: write_splits(d, b'{"text": ["a", "list"]}\n'),
        ["train.jsonl:1: field 'text' is a list, not a string"],
    ),
    "parquet without the column": (parquet_without_text, ["has no column 'text' (its columns: body, id)"]),
    "empty corpus after filtering": (
        lambda d: write_splits(d, b'{"text": ""}\n{"text": ""}\n'),
        ["no text (every document is empty)"],
    ),
    "undecodable file": (
        lambda d: write_splits(d, b"fine line\nbad \xff byte\n", "train.txt"),
        ["train.txt:2 is not valid UTF-8 (byte 0xff)", "iconv"],
    ),
    "damaged gzip": (
        lambda d: write_splits(d, gzip.compress(b'{"text": "x"}\n' * 1000)[:-40], "train.jsonl.gz"),
        ["cannot be decompressed", "damaged or truncated"],
    ),
    "nothing readable": (lambda d: (d.mkdir(), (d / "a.csv").write_text("x,y\n")), ["holds no file lmtrain reads"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_corpus_is_one_line_exit_2_and_leaves_nothing(case: str, tmp_path: Path, capsys) -> None:
    make, fragments = CASES[case]
    corpus = tmp_path / "corpus"
    make(corpus)
    cache = tmp_path / "cache"
    code = main(["prepare", "--dataset", "text", "--data-dir", str(corpus), "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    prepared = cache / "prepared"
    assert not prepared.exists() or [p for p in prepared.rglob("*") if p.is_file()] == []
