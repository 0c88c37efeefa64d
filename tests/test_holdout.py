"""Held-out splits: chosen by a seeded hash of each document, never overlapping, stable when files are added."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.holdout import Holdout, HoldoutOptions, Take, doc_hash
from lmtrain.data.prepare import PrepareOptions, prepare_corpus
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import ConfigError, DataError

TEXT = get_dataset("text")
SPLITS = ["train", "valid", "test"]


def make_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = "alpha beta gamma delta kernel driver memory page lock queue".split()
    return [f"doc {seed}-{i}: " + " ".join(rng.choices(words, k=rng.randint(3, 30))) for i in range(n)]


def write_jsonl(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))


def split_docs(folder: Path, cache: Path, tokenizer: Tokenizer, options: HoldoutOptions) -> dict[str, list[str]]:
    """The documents of each split, decoded from the prepared token streams."""
    paths = DataPaths(folder, None, cache, download=False)
    corpus = find_corpus(TEXT, SPLITS, paths, options, log=lambda _: None)
    prepared = prepare_corpus(TEXT, corpus, paths, tokenizer, PrepareOptions())
    out = {}
    for split, (p, _) in prepared.items():
        tokens = np.asarray(p.tokens()).astype(np.int64)
        pieces = np.split(tokens, np.flatnonzero(tokens == tokenizer.eot_id))
        out[split] = [tokenizer.decode(piece[1:] if i else piece) for i, piece in enumerate(pieces)]
        assert len(out[split]) == p.summary()["documents"]
    return out


def test_no_document_is_in_two_splits_and_none_is_lost(tokenizer: Tokenizer, tmp_path: Path) -> None:
    docs = make_docs(300, 0)
    write_jsonl(tmp_path / "corpus" / "all.jsonl", docs)
    got = split_docs(tmp_path / "corpus", tmp_path / "c", tokenizer, HoldoutOptions(valid_docs=20, test_fraction=0.1))
    assert len(got["valid"]) == 20 and 10 <= len(got["test"]) <= 55
    assert sorted(got["train"] + got["valid"] + got["test"]) == sorted(docs)
    assert not set(got["train"]) & set(got["valid"]) and not set(got["valid"]) & set(got["test"])
    assert not set(got["train"]) & set(got["test"])


def test_adding_files_moves_no_existing_document(tokenizer: Tokenizer, tmp_path: Path) -> None:
    first = make_docs(200, 1)
    write_jsonl(tmp_path / "corpus" / "a.jsonl", first)
    options = HoldoutOptions(valid_fraction=0.1, test_fraction=0.1)
    before = split_docs(tmp_path / "corpus", tmp_path / "c", tokenizer, options)
    write_jsonl(tmp_path / "corpus" / "b.jsonl", make_docs(200, 2))
    after = split_docs(tmp_path / "corpus", tmp_path / "c", tokenizer, options)
    for split in SPLITS:
        assert set(before[split]) <= set(after[split])
        assert len(after[split]) > len(before[split])


def test_documents_are_chosen_by_their_hash_and_seed(tokenizer: Tokenizer, tmp_path: Path) -> None:
    docs = make_docs(100, 3)
    write_jsonl(tmp_path / "corpus" / "all.jsonl", docs + docs[:10])  # ten duplicates
    got = split_docs(tmp_path / "corpus", tmp_path / "c", tokenizer, HoldoutOptions(valid_docs=5, test_docs=5))
    ranked = sorted(set(docs), key=lambda d: doc_hash(d.encode(), 0))
    assert set(got["valid"]) == set(ranked[:5]) and set(got["test"]) == set(ranked[5:10])
    for dup in docs[:10]:  # identical documents share a split
        assert sum(split.count(dup) for split in got.values()) == 2
        assert any(split.count(dup) == 2 for split in got.values())
    reseeded = split_docs(
        tmp_path / "corpus", tmp_path / "c", tokenizer, HoldoutOptions(valid_docs=5, test_docs=5, seed=7)
    )
    assert set(reseeded["valid"]) != set(got["valid"])


def test_meta_records_how_documents_were_held_out(tokenizer: Tokenizer, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus" / "all.jsonl", make_docs(50, 4))
    paths = DataPaths(tmp_path / "corpus", None, tmp_path / "c", download=False)
    corpus = find_corpus(TEXT, SPLITS, paths, HoldoutOptions(valid_docs=3, test_fraction=0.2, seed=5), log=print)
    (prepared, _), *_ = prepare_corpus(TEXT, corpus, paths, tokenizer, PrepareOptions()).values()
    meta = json.loads((prepared.folder / "meta.json").read_text())
    assert meta["holdout"] == {
        "seed": 5,
        "takes": [{"split": "valid", "docs": 3, "fraction": None}, {"split": "test", "docs": None, "fraction": 0.2}],
    }
    assert [b["split"] for b in meta["bands"]] == ["valid", "test"]


def test_holdout_flags_for_a_split_with_files_are_refused(tmp_path: Path) -> None:
    for split in SPLITS:
        write_jsonl(tmp_path / "corpus" / f"{split}.jsonl", make_docs(3, 5))
    paths = DataPaths(tmp_path / "corpus", None, tmp_path / "c", download=False)
    with pytest.raises(ConfigError, match="the corpus has its own valid files"):
        find_corpus(TEXT, SPLITS, paths, HoldoutOptions(valid_docs=2), log=print)
    with pytest.raises(ConfigError, match="has its own splits"):
        find_corpus(get_dataset("sample"), ["train"], paths, HoldoutOptions(test_fraction=0.1), log=print)


def test_too_many_held_out_documents_is_an_error() -> None:
    holdout = Holdout(0, (Take("valid", docs=10),))
    with pytest.raises(DataError, match="too few to hold out 10"):
        holdout.bands(np.arange(10, dtype=np.uint64))
    bands = holdout.bands(np.arange(100, dtype=np.uint64) * 1000)
    assert bands.bounds == (("valid", 9000),)
