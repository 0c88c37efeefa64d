"""The benchmark code runs and checks what it compares (no timing assertions: speed lives in `lmtrain bench`)."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import SAMPLE
from lmtrain.bench.generate import bench_generate
from lmtrain.bench.prepare import bench_prepare, build_corpus
from lmtrain.data.datasets import get_dataset
from lmtrain.model.config import GPTConfig
from lmtrain.model.gpt import GPT


def test_bench_generate_compares_cached_and_uncached_tokens() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=101, n_layer=1, n_head=2, d_model=16, d_ff=64, max_seq_len=32)).eval()
    result = bench_generate(model, torch.device("cpu"), new_tokens=10, prompt_tokens=4, repeats=1)
    assert result["identical_tokens"] is True and result["new_tokens"] == 10
    assert result["speedup"] > 0 and result["seconds_cached"] >= 0


def test_bench_prepare_compares_one_worker_with_several(tokenizer, tmp_path: Path) -> None:
    source = SAMPLE / "wiki.valid.raw"
    assert build_corpus(source, 0.12, tmp_path / "c.raw") == 3 * source.stat().st_size
    result = bench_prepare(get_dataset("wikitext-103"), source, tokenizer, megabytes=0.1, workers=2)
    assert result["identical_output"] is True and result["workers"] == 2 and result["tokens"] > 0
