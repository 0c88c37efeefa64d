"""Contiguous windows of seq_len+1 tokens from the packed stream, crossing document boundaries."""

from __future__ import annotations

import numpy as np
import torch

from conftest import SAMPLE
from lmtrain.data.datasets import get_dataset
from lmtrain.data.loader import make_batch, window_starts
from lmtrain.data.prepare import PrepareOptions, prepare_file
from lmtrain.data.tokenizers.gpt2 import EOT_ID

EOT = 50256


def iter_batches(tokens: np.ndarray, seq_len: int, batch_size: int):
    """Consecutive windows in stream order, batch_size at a time, as evaluation visits them."""
    starts = window_starts(len(tokens), seq_len)
    for i in range(0, len(starts), batch_size):
        yield make_batch(tokens, starts[i : i + batch_size], seq_len)


def test_window_starts_fit_in_the_stream() -> None:
    starts = window_starts(n_tokens=21, seq_len=5)
    assert starts.tolist() == [0, 5, 10, 15]  # the last window is tokens[15:21]
    assert window_starts(20, 5).tolist() == [0, 5, 10]
    assert window_starts(21, 5, offset=2).tolist() == [2, 7, 12]
    assert window_starts(3, 5).tolist() == []


def test_batches_are_contiguous_windows_with_shifted_targets() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    x, y = make_batch(tokens, np.array([0, 40]), seq_len=8)
    assert x.dtype == torch.int64 and x.shape == (2, 8) and y.shape == (2, 8)
    assert x[1].tolist() == list(range(40, 48)) and y[1].tolist() == list(range(41, 49))


def test_every_token_after_the_first_is_a_target_once() -> None:
    tokens = np.arange(1, 42, dtype=np.uint16)  # 41 tokens, seq_len 8 -> 5 windows, 40 targets
    targets = torch.cat([y.flatten() for _, y in iter_batches(tokens, seq_len=8, batch_size=2)])
    assert targets.tolist() == list(range(2, 42))


def test_windows_cross_documents_with_endoftext_between_them() -> None:
    doc_a, doc_b = list(range(1, 8)), list(range(100, 110))
    tokens = np.array(doc_a + [EOT] + doc_b, dtype=np.uint16)
    (x, y), *_ = iter_batches(tokens, seq_len=12, batch_size=1)
    assert x[0].tolist() == doc_a + [EOT] + doc_b[:4]
    assert y[0, 6].item() == EOT and y[0, 7].item() == doc_b[0]


def test_long_wikitext_documents_run_across_windows(tokenizer, cache_dir) -> None:
    source = SAMPLE / "wiki.valid.raw"
    tokens = prepare_file(get_dataset("wikitext-103"), "valid", source, tokenizer, cache_dir, options=PrepareOptions())
    tokens = tokens.splits["valid"].tokens()
    eot_positions = np.flatnonzero(np.asarray(tokens) == EOT_ID)
    seq_len = 64
    assert np.diff(np.concatenate([[0], eot_positions])).max() > 4 * seq_len  # documents longer than a window
    batches = list(iter_batches(tokens, seq_len=seq_len, batch_size=16))
    stream = torch.cat([torch.cat([x[:, :1], y], dim=1) for x, y in batches]).numpy()
    rebuilt = np.concatenate([stream[0]] + [row[1:] for row in stream[1:]])
    assert np.array_equal(rebuilt, np.asarray(tokens[: len(rebuilt)]))
    assert any(EOT_ID in x[:, 1:].flatten().tolist() for x, _ in batches)  # an EOT inside a window
