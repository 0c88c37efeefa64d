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
from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.holdout import HoldoutOptions
from lmtrain.data.prepare import PrepareOptions, PrepareResult, prepare_corpus, prepare_file
from lmtrain.data.shards import read_prepared
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gpt2 import EOT_ID
from lmtrain.errors import DataError

WIKI103 = get_dataset("wikitext-103")


def prepare_split(spec, split, source: Path, tokenizer: Tokenizer, cache: Path, **options) -> PrepareResult:
    return prepare_file(spec, split, source, tokenizer, cache, options=PrepareOptions(**options))


def only(result: PrepareResult):
    (prepared,) = result.splits.values()
    return prepared


def shard_bytes(result: PrepareResult) -> bytes:
    return np.asarray(only(result).tokens()).tobytes()


def test_sample_splits_have_the_known_counts(tokenizer: Tokenizer, cache_dir: Path) -> None:
    paths = DataPaths(None, None, cache_dir, download=False)
    sample = get_dataset("sample")
    corpus = find_corpus(sample, ["train", "valid", "test"], paths, HoldoutOptions(), log=lambda _: None)
    assert {s: [f.path for f in c.files] for s, c in corpus.sources.items()} == {
        split: [SAMPLE / f"wiki.{split}.raw"] for split in ("train", "valid", "test")
    }
    results = {s: p for s, (p, _) in prepare_corpus(sample, corpus, paths, tokenizer, PrepareOptions()).items()}
    summary = {split: p.summary() for split, p in results.items()}
    assert {s: v["original_tokens"] for s, v in summary.items()} == {"train": 212_483, "valid": 9_456, "test": 23_630}
    assert {s: v["documents"] for s, v in summary.items()} == {"train": 50, "valid": 6, "test": 6}
    assert summary["train"]["bytes"] == 1_115_442
    for split, p in results.items():
        assert p.tokens().shape == (summary[split]["tokens"],)
        assert p.meta["tokenizer"] == tokenizer.fingerprint() and p.meta["dtype"] == "uint16"


def test_stream_is_the_text_encoding_with_endoftext_between_documents(
    tokenizer: Tokenizer, cache_dir: Path, wikitext103_test_raw: Path
) -> None:
    source = wikitext103_test_raw
    result = prepare_split(WIKI103, "test", source, tokenizer, cache_dir, block_bytes=100_000, workers=2)
    prepared = only(result)
    tokens = np.asarray(prepared.tokens())
    meta = prepared.summary()
    assert len(prepared.info["shards"]) > 5  # several shards read as one stream
    assert meta["original_tokens"] == 245_569 and meta["documents"] == 62
    assert int((tokens == EOT_ID).sum()) == 61
    text = source.read_text(encoding="utf-8")
    assert tokens[tokens != EOT_ID].tolist() == tokenizer.encode(text)
    docs = np.split(tokens, np.flatnonzero(tokens == EOT_ID))
    first_doc = tokenizer.decode(docs[0].tolist())
    assert text.startswith(first_doc) and first_doc.startswith(" \n = Robert Boulter = ")
    assert tokenizer.decode(docs[1][1:].tolist()).startswith(" = Du Fu = ")
    assert meta["bytes"] == len(text.encode("utf-8")) == 1_290_590
    assert prepared.identity.startswith("173c87a53759")  # a split of one file is known by its sha256


def test_process_pool_gives_the_same_bytes_as_one_process(tokenizer: Tokenizer, tmp_path: Path) -> None:
    source = SAMPLE / "wiki.train.raw"
    one = prepare_split(WIKI103, "train", source, tokenizer, tmp_path / "a", workers=1)
    pool = prepare_split(WIKI103, "train", source, tokenizer, tmp_path / "b", workers=2, block_bytes=64 << 10)
    assert len(only(pool).info["shards"]) > len(only(one).info["shards"])
    assert shard_bytes(one) == shard_bytes(pool)
    assert only(one).summary() == only(pool).summary()


def test_cache_is_reused_and_keyed_by_content(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.train.raw"
    source.write_text(" = A = \n one two\n = B = \n three\n")
    first = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    again = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    assert not first.cached and again.cached and again.folder == first.folder
    assert tokenizer.cache_id() in first.folder.name
    source.write_text(" = A = \n one two\n = B = \n four\n")
    changed = prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    assert not changed.cached and changed.folder != first.folder
    assert read_prepared(first.folder) is not None


def test_force_replaces_the_cached_split(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.valid.raw"
    source.write_text(" = A = \n one two three\n")
    first = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    shard = first.folder / only(first).info["shards"][0]["file"]
    inode = shard.stat().st_ino
    forced = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir, force=True)
    assert not forced.cached and forced.folder == first.folder
    assert shard.stat().st_ino != inode  # written anew, not the old file kept
    assert only(forced).summary() == only(first).summary()
    assert [p.name for p in first.folder.parent.iterdir()] == [first.folder.name]


def test_a_damaged_prepared_split_is_not_trusted(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.valid.raw"
    source.write_text(" = A = \n one two three four five\n")
    first = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    with open(first.folder / only(first).info["shards"][0]["file"], "r+b") as f:
        f.truncate(2)
    assert read_prepared(first.folder) is None
    again = prepare_split(WIKI103, "valid", source, tokenizer, cache_dir)
    assert not again.cached and only(again).summary() == only(first).summary()


def test_failure_mid_prepare_leaves_no_folder(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.train.raw"
    source.write_bytes(b" = A = \n fine text\n = B = \n bad \xff byte\n")
    with pytest.raises(DataError, match=r"wiki.train.raw:4 is not valid UTF-8 \(byte 0xff\)"):
        prepare_split(WIKI103, "train", source, tokenizer, cache_dir)
    leftovers = list((cache_dir / "prepared" / "wikitext-103").iterdir())
    assert leftovers == []


def test_empty_split_is_an_error(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "wiki.test.raw"
    source.write_bytes(b"")
    with pytest.raises(DataError, match="empty; the corpus needs text"):
        prepare_split(WIKI103, "test", source, tokenizer, cache_dir)


@pytest.mark.slow
def test_kill_9_during_prepare_then_again_redoes_only_unfinished_shards(tmp_path: Path) -> None:
    sample = (SAMPLE / "wiki.train.raw").read_bytes()
    data_dir = tmp_path / "big"
    data_dir.mkdir()
    (data_dir / "wiki.train.raw").write_bytes(sample * 20)  # ~22 MB: seconds of tokenizing, over 40 shards
    shutil.copytree(GPT2, data_dir / "gpt2")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "lmtrain", "prepare", "--data-dir", str(data_dir), "--cache-dir", str(cache)]
    cmd += ["--splits", "train", "--workers", "1", "--shard-mb", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = cache / "prepared" / "wikitext-103"
    deadline = time.monotonic() + 60
    markers: list[Path] = []
    while time.monotonic() < deadline and len(markers) < 3:
        markers = list(parent.glob(".*.partial/*.json")) if parent.is_dir() else []
        time.sleep(0.01)
    assert len(markers) >= 3, "prepare never finished a shard"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p for p in parent.iterdir() if not p.name.startswith(".")] == []  # nothing a run would trust
    left = len(list(parent.glob(".*.partial/0*.json")))
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True)
    row = json.loads(done.stdout)["train"]
    assert row["documents"] == 50 * 20 and row["shards"] > 40
    assert row["reused_units"] == left and 2 <= left < row["shards"]  # the finished shards were kept, the rest redone
    assert list(parent.glob(".*")) == []
    fresh = subprocess.run(
        cmd + ["--json", "--force", "--cache-dir", str(tmp_path / "c2")], capture_output=True, text=True, check=True
    )
    again = json.loads(fresh.stdout)["train"]
    assert again["reused_units"] == 0 and again["shards"] == row["shards"]
    first, second = (read_prepared(Path(r["path"]))["train"] for r in (row, again))
    assert np.array_equal(np.asarray(first.tokens()), np.asarray(second.tokens()))


@pytest.mark.slow
def test_two_prepares_of_one_corpus_started_at_once_both_succeed_and_share_the_work(tmp_path: Path) -> None:
    """Two runs started together on a fresh cache: one prepares, the other waits on the source's lock and then reads
    the finished result (without the lock the second died removing the first one's partial shards)."""
    data_dir = tmp_path / "corpus"
    data_dir.mkdir()
    (data_dir / "wiki.train.raw").write_bytes((SAMPLE / "wiki.train.raw").read_bytes() * 3)  # ~3.5 MB, 70 shards
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "lmtrain", "prepare", "--data-dir", str(data_dir)]
    cmd += ["--cache-dir", str(cache), "--splits", "train", "--workers", "1", "--shard-mb", "0.05", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    rows = [json.loads(out)["train"] for out, _ in results]
    assert rows[0]["path"] == rows[1]["path"] and rows[0]["tokens"] == rows[1]["tokens"] > 0
    assert sorted(r["cached"] for r in rows) == [False, True]  # tokenized once
    waited = next(err for (_, err), row in zip(results, rows) if row["cached"])
    assert "another process is preparing the same data; waiting for it" in waited
    assert read_prepared(Path(rows[0]["path"])) is not None
    assert [p.name for p in (cache / "prepared" / "wikitext-103").iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_a_prepare_killed_with_kill_9_leaves_no_worker_running(tmp_path: Path) -> None:
    """The out-of-memory killer's kill -9 gives the pool no chance to shut down: each worker notices its parent is
    gone and exits (three were still running 20 minutes later before they did)."""
    psutil = pytest.importorskip("psutil")
    data_dir = tmp_path / "big"
    data_dir.mkdir()
    (data_dir / "wiki.train.raw").write_bytes((SAMPLE / "wiki.train.raw").read_bytes() * 20)  # seconds of work
    shutil.copytree(GPT2, data_dir / "gpt2")
    cmd = [sys.executable, "-m", "lmtrain", "prepare", "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "c")]
    proc = subprocess.Popen(
        cmd + ["--splits", "train", "--workers", "2", "--shard-mb", "0.5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    workers: list = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = [p for p in parent.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
        time.sleep(0.05)
    assert len(workers) >= 2, "prepare never started its workers"
    time.sleep(1.0)  # the workers are tokenizing
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=60)  # a worker still starting up exits once it is up
    assert alive == []
