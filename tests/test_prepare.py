"""Preparing splits: counts, exact token stream, pool == in-process, content-keyed cache, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import GPT2, SAMPLE
from lmtrain.data.datasets import DataPaths, get_dataset, locate_splits
from lmtrain.data.prepare import prepare_dataset, prepare_split, read_prepared
from lmtrain.data.tokenizer import EOT_ID, Tokenizer
from lmtrain.errors import DataError

WIKI103 = get_dataset("wikitext-103")


def test_sample_splits_have_the_known_counts(tokenizer: Tokenizer, cache_dir: Path) -> None:
    paths = DataPaths(None, None, cache_dir, download=False)
    sample = get_dataset("sample")
    sources = locate_splits(sample, ["train", "valid", "test"], paths, log=lambda _: None)
    assert sources == {split: SAMPLE / f"wiki.{split}.raw" for split in ("train", "valid", "test")}
    results = prepare_dataset(sample, sources, paths, tokenizer)
    summary = {split: r.prepared.summary() for split, r in results.items()}
    assert {s: v["original_tokens"] for s, v in summary.items()} == {"train": 212_483, "valid": 9_456, "test": 23_630}
    assert {s: v["documents"] for s, v in summary.items()} == {"train": 50, "valid": 6, "test": 6}
    assert summary["train"]["bytes"] == 1_115_442
    for split, r in results.items():
        assert r.prepared.tokens().shape == (summary[split]["tokens"],)
        assert r.prepared.meta["tokenizer"] == tokenizer.fingerprint()


def test_stream_is_the_text_encoding_with_endoftext_between_documents(
    tokenizer: Tokenizer, cache_dir: Path, wikitext103_test_raw: Path
) -> None:
    source = wikitext103_test_raw
    result = prepare_split(WIKI103, "test", source, tokenizer, cache_dir)
    tokens = np.asarray(result.prepared.tokens())
    meta = result.prepared.meta
    assert meta["original_tokens"] == 245_569 and meta["documents"] == 62
    assert int((tokens == EOT_ID).sum()) == 61
    text = source.read_text(encoding="utf-8")
    assert tokens[tokens != EOT_ID].tolist() == tokenizer.encode(text)
    docs = np.split(tokens, np.flatnonzero(tokens == EOT_ID))
    first_doc = tokenizer.decode(docs[0].tolist())
    assert text.startswith(first_doc) and first_doc.startswith(" \n = Robert Boulter = ")
    assert tokenizer.decode(docs[1][1:].tolist()).startswith(" = Du Fu = ")
    assert meta["bytes"] == len(text.encode("utf-8")) == 1_290_590
    assert meta["source"]["sha256"].startswith("173c87a53759")


def test_process_pool_gives_the_same_bytes_as_one_process(tokenizer: Tokenizer, tmp_path: Path) -> None:
    source = SAMPLE / "wiki.train.raw"
    one = prepare_split(WIKI103, "train", source, tokenizer, tmp_path / "a", workers=1)
    pool = prepare_split(WIKI103, "train", source, tokenizer, tmp_path / "b", workers=2, chunk_bytes=64 << 10)
    assert one.prepared.bin_path.read_bytes() == pool.prepared.bin_path.read_bytes()
    assert one.prepared.summary() == pool.prepared.summary()


def test_cache_is_reused_and_keyed_by_content(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.train.raw"
    source.write_text(" = A = \n one two\n = B = \n three\n")
    first = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    again = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    assert not first.cached and again.cached and again.prepared.folder == first.prepared.folder
    assert tokenizer.cache_id() in first.prepared.folder.name
    source.write_text(" = A = \n one two\n = B = \n four\n")
    changed = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    assert not changed.cached and changed.prepared.folder != first.prepared.folder
    assert read_prepared(first.prepared.folder) is not None


def test_force_replaces_the_cached_split(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.valid.raw"
    source.write_text(" = A = \n one two three\n")
    first = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    inode = first.prepared.bin_path.stat().st_ino
    forced = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir, force=True)
    assert not forced.cached and forced.prepared.folder == first.prepared.folder
    assert forced.prepared.bin_path.stat().st_ino != inode  # written anew, not the old file kept
    assert forced.prepared.summary() == first.prepared.summary()
    assert [p.name for p in first.prepared.folder.parent.iterdir()] == [first.prepared.folder.name]


def test_a_damaged_prepared_split_is_not_trusted(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.valid.raw"
    source.write_text(" = A = \n one two three four five\n")
    first = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    with open(first.prepared.bin_path, "r+b") as f:
        f.truncate(2)
    assert read_prepared(first.prepared.folder) is None
    again = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    assert not again.cached and again.prepared.summary() == first.prepared.summary()


def test_failure_mid_prepare_leaves_no_folder(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.train.raw"
    source.write_bytes(b" = A = \n fine text\n = B = \n bad \xff byte\n")
    with pytest.raises(DataError, match=r"not valid UTF-8: byte 0xff at offset 32 \(line 4\)"):
        prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    leftovers = list((cache_dir / "prepared" / "wikitext-103").iterdir())
    assert leftovers == []


def test_empty_split_is_an_error(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.test.raw"
    source.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        prepare_split(WIKI103, "test", source, tokenizer, cache_dir)


@pytest.mark.slow
def test_kill_9_during_prepare_leaves_nothing_trusted(tmp_path: Path) -> None:
    sample = (SAMPLE / "wiki.train.raw").read_bytes()
    data_dir = tmp_path / "big"
    data_dir.mkdir()
    (data_dir / "wiki.train.raw").write_bytes(sample * 60)  # ~67 MB: seconds of tokenizing
    shutil.copytree(GPT2, data_dir / "gpt2")
    cache = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "lmtrain",
        "prepare",
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(cache),
        "--splits",
        "train",
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = cache / "prepared" / "wikitext-103"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (parent.is_dir() and any(parent.glob(".*.tmp-*"))):
        time.sleep(0.01)
    assert any(parent.glob(".*.tmp-*")), "prepare never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p for p in parent.iterdir() if not p.name.startswith(".")] == []
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["train"]["documents"] == 50 * 60
    assert list(parent.glob(".*.tmp-*")) == []
