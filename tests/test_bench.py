"""The benchmark code runs and checks what it compares (no timing assertions: speed lives in `lmtrain bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import SAMPLE
from lmtrain.bench.generate import bench_generate
from lmtrain.bench.prepare import bench_prepare, build_corpus
from lmtrain.data.datasets import get_dataset
from lmtrain.data.prepare import PrepareOptions, prepare_file
from lmtrain.model.config import GPTConfig
from lmtrain.model.gpt import GPT


def test_bench_generate_compares_cached_and_uncached_tokens() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=101, n_layer=1, n_head=2, d_model=16, d_ff=64, max_seq_len=32)).eval()
    result = bench_generate(model, torch.device("cpu"), new_tokens=10, prompt_tokens=4, repeats=1)
    assert result["identical_tokens"] is True and result["new_tokens"] == 10
    cached, uncached = result["tokens_per_s_cached"], result["tokens_per_s_uncached"]
    assert result["speedup"] == pytest.approx(cached / uncached, rel=0.05, abs=0.01)  # the ratio of the two runs


def test_bench_prepare_compares_one_worker_with_several(tokenizer, tmp_path: Path) -> None:
    source = SAMPLE / "wiki.valid.raw"
    assert build_corpus(source, 0.12, tmp_path / "c.raw") == 3 * source.stat().st_size
    spec = get_dataset("wikitext-103")
    result = bench_prepare(spec, source, tokenizer, megabytes=0.1, workers=2)
    assert result["identical_output"] is True and result["workers"] == 2
    build_corpus(source, 0.1, tmp_path / "same.raw")  # the corpus the benchmark built and tokenized
    alone = prepare_file(spec, "train", tmp_path / "same.raw", tokenizer, tmp_path / "cache", options=PrepareOptions())
    assert result["tokens"] == alone.splits["train"].num_tokens
    one, two, half = result["seconds_1_worker"], result["seconds_2_workers"], 0.005  # rounded to 0.01 s
    low, high = (one - half) / (two + half), (one + half) / max(two - half, 1e-9)
    assert low - 0.005 <= result["speedup"] <= high + 0.005  # the ratio of the two runs' times
