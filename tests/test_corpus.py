"""Own corpora: every input format and compression, folders/globs/files, split files by name, datasets folders,
giant documents cut into pieces, shards read as one stream."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch

from lmtrain.data.corpus import discover, find_corpus, split_of_path
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.holdout import HoldoutOptions
from lmtrain.data.prepare import PrepareOptions, prepare_corpus
from lmtrain.data.shards import TokenStream
from lmtrain.data.tokenizers.base import Tokenizer

TEXT = get_dataset("text")
DOCS = [
    "First document.\nIt has two lines.\n",
    "Second: unicode é 日本語 🦙 and <|endoftext|> as plain text.\n",
    "Third one\n\nwith a blank line and trailing spaces   \n",
    "Fourth.",
]


def prepare(location: Path, cache: Path, tokenizer: Tokenizer, splits=("train",), holdout=None, **options):
    paths = DataPaths(location, None, cache, download=False)
    corpus = find_corpus(TEXT, list(splits), paths, holdout or HoldoutOptions(valid_docs=1, test_docs=1), log=print)
    return {s: p for s, (p, _) in prepare_corpus(TEXT, corpus, paths, tokenizer, PrepareOptions(**options)).items()}


def expected_tokens(tokenizer: Tokenizer, docs: list[str]) -> list[int]:
    out: list[int] = []
    for i, doc in enumerate(docs):
        out += ([tokenizer.eot_id] if i else []) + tokenizer.encode(doc)
    return out


def write_formats(folder: Path, docs: list[str]) -> dict[str, Path]:
    """The same documents as txt, jsonl, json (array) and parquet, each in its own folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    made = {}
    for kind in ("txt", "jsonl", "json", "parquet"):
        (folder / kind).mkdir(parents=True)
        path = folder / kind / f"corpus.{kind}"
        if kind == "txt":  # each document ends with a newline, then the separator line
            path.write_text("".join(d + "<|endoftext|>\n" for d in docs[:-1]) + docs[-1])
        elif kind == "jsonl":
            path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
        elif kind == "json":
            path.write_text(json.dumps([{"text": d} for d in docs]))
        else:
            pq.write_table(pa.table({"text": docs, "n": list(range(len(docs)))}), path, row_group_size=2)
        made[kind] = path
    return made


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet"])
def test_every_format_gives_the_same_stream(tokenizer: Tokenizer, tmp_path: Path, kind: str) -> None:
    docs = [d for d in DOCS if d.endswith("\n")]  # a text file's last document keeps its newline
    files = write_formats(tmp_path / "in", docs)
    holdout = HoldoutOptions(valid_fraction=1e-9, test_fraction=1e-9)  # nothing falls in bands this narrow
    want = expected_tokens(tokenizer, docs)
    with pytest.raises(Exception, match="left the valid split empty"):
        prepare(files[kind], tmp_path / "c", tokenizer, holdout=holdout)
    text_stream = _pool_stream(files["txt"], tmp_path / "c1", tokenizer)
    other = _pool_stream(files[kind], tmp_path / "c2", tokenizer)
    assert text_stream == other == want


def _pool_stream(path: Path, cache: Path, tokenizer: Tokenizer) -> list[int]:
    """All documents of a one-split corpus: the file placed as train.* beside empty-free valid/test files."""
    folder = cache.parent / f"{cache.name}-corpus"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / path.name).write_bytes(path.read_bytes())
    (folder / "valid.txt").write_text("held out\n")
    (folder / "test.txt").write_text("held out too\n")
    return np.asarray(prepare(folder, cache, tokenizer, holdout=HoldoutOptions())["train"].tokens()).tolist()


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open), (".zst", None)])
def test_compressed_inputs_read_like_plain_ones(tokenizer: Tokenizer, tmp_path: Path, suffix: str, opener) -> None:
    raw = "".join(json.dumps({"text": d}) + "\n" for d in DOCS).encode()
    path = tmp_path / "in" / "train" / f"part.jsonl{suffix}"
    path.parent.mkdir(parents=True)
    if opener is None:
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    else:
        with opener(path, "wb") as f:
            f.write(raw)
    (tmp_path / "in" / "valid.jsonl").write_text(json.dumps({"text": "v"}) + "\n")
    (tmp_path / "in" / "test.jsonl").write_text(json.dumps({"text": "t"}) + "\n")
    prepared = prepare(tmp_path / "in", tmp_path / "c", tokenizer, holdout=HoldoutOptions())["train"]
    assert np.asarray(prepared.tokens()).tolist() == expected_tokens(tokenizer, DOCS)
    assert prepared.summary()["documents"] == 4
    assert prepared.meta["source"]["files"][0]["compression"] == suffix


def test_files_are_put_in_splits_by_their_names() -> None:
    root = Path("/corpus")
    cases = {
        "train.jsonl": "train",
        "wiki.valid.raw": "valid",
        "data/test-00000-of-00002.parquet": "test",
        "validation/part-1.txt": "valid",
        "dev_set.jsonl.gz": "valid",
        "notes/attention_test_results.txt": None,
        "chapter1.md": None,
    }
    assert {name: split_of_path(root / name, root) for name in cases} == cases


def test_a_folder_a_glob_and_a_file(tokenizer: Tokenizer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for i, doc in enumerate(DOCS):
        (folder / ("sub" if i % 2 else ".") / f"{i}.md").write_text(doc)
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / ".hidden.txt").write_text("never read")
    found = discover(folder, log=lambda _: None)
    assert [f.path.name for f in found[None]] == ["0.md", "2.md", "1.md", "3.md"]  # path order: 0.md 2.md sub/...
    assert [f.path.name for f in discover(Path(f"{folder}/**/*.md"), log=lambda _: None)[None]] == [
        "0.md",
        "2.md",
        "1.md",
        "3.md",
    ]
    assert [f.path for f in discover(folder / "2.md")[None]] == [folder / "2.md"]
    splits = prepare(folder, tmp_path / "c", tokenizer, splits=("train", "valid", "test"))
    docs = {s: p.summary()["documents"] for s, p in splits.items()}
    assert docs == {"train": 2, "valid": 1, "test": 1}


def test_a_long_document_is_cut_where_no_token_changes(tokenizer: Tokenizer, tmp_path: Path) -> None:
    lines = [f"Line {i}: the quick brown fox, {i * 7} jumps.  Over\tthe dog!" for i in range(3000)]
    doc = "\n".join(lines) + "\n\n\nTail  \n"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "train.txt").write_text(doc + "<|endoftext|>\nsecond doc\n")
    (folder / "valid.txt").write_text("v\n")
    (folder / "test.txt").write_text("t\n")
    prepared = prepare(folder, tmp_path / "c", tokenizer, holdout=HoldoutOptions(), block_bytes=8 << 10, workers=2)
    train = prepared["train"]
    assert len(train.info["shards"]) > 5 and train.summary()["documents"] == 2
    assert np.asarray(train.tokens()).tolist() == expected_tokens(tokenizer, [doc, "second doc\n"])
    assert train.summary()["original_tokens"] == len(doc.split()) + doc.count("\n") + 2 + 1


def test_a_stream_of_shards_slices_like_one_array() -> None:
    parts = [np.arange(0, 5, dtype=np.uint16), np.array([99], np.uint16), np.arange(5, 12, dtype=np.uint16)]
    stream = TokenStream(parts)
    whole = np.concatenate(parts)
    assert len(stream) == len(whole) == 13 and np.array_equal(np.asarray(stream), whole)
    for start in range(13):
        for stop in range(start, 14):
            assert np.array_equal(stream[start:stop], whole[start:stop])
    assert stream[5] == 99 and stream[-1] == 11


def test_a_datasets_folder_and_a_hub_layout(tokenizer: Tokenizer, tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"content": DOCS * 3}),
            "validation": datasets.Dataset.from_dict({"content": ["valid text"]}),
            "other": datasets.Dataset.from_dict({"content": ["ignored"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    saved = prepare(
        tmp_path / "saved",
        tmp_path / "c",
        tokenizer,
        splits=("train", "valid", "test"),
        holdout=HoldoutOptions(test_docs=1),
        text_field="content",
    )
    assert saved["valid"].summary()["documents"] == 1 and not saved["valid"].meta["holdout"]
    assert saved["train"].summary()["documents"] + saved["test"].summary()["documents"] == 12
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    for split, docs in (("train", DOCS), ("validation", ["v"]), ("test", ["t"])):
        pq.write_table(pa.table({"text": docs}), hub / f"{split}-00000-of-00001.parquet")
    from_hub = prepare(
        tmp_path / "hub", tmp_path / "c", tokenizer, splits=("train", "valid", "test"), holdout=HoldoutOptions()
    )
    assert {s: p.summary()["documents"] for s, p in from_hub.items()} == {"train": 4, "valid": 1, "test": 1}


def test_batches_from_shards_equal_batches_from_one_array() -> None:
    from lmtrain.data.loader import TrainSampler, make_batch

    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 500, size=n).astype(np.uint16) for n in (300, 1, 450, 77)]
    stream, whole = TokenStream(parts), np.concatenate(parts)
    sampler = TrainSampler(len(whole), seq_len=32, batch_size=4, seed=3)
    for step in range(sampler.steps_per_epoch * 2):
        starts = sampler.batch_starts(step)
        for a, b in zip(make_batch(stream, starts, 32), make_batch(whole, starts, 32)):
            assert torch.equal(a, b)


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import lmtrain.data.progress as progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    lines: list[str] = []
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    plain = progress.PrepareProgress("prepare text pool", 10_000_000, lines.append, stream=io.StringIO())
    plain.advance(4_000_000)
    plain.close()
    assert len(lines) == 1 and "4 of 10 MB" in lines[0] and "MB/s" in lines[0] and "s left" in lines[0]
    screen = Terminal()
    bar = progress.PrepareProgress("prepare text pool", 10_000_000, lines.append, stream=screen)
    bar.advance(4_000_000)
    bar.close()
    assert len(lines) == 1 and "prepare text pool" in screen.getvalue()
