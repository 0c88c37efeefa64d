"""Perplexity comparable with the papers: per token, per original word, and bits per byte.

The scored stream is `<|endoftext|>` followed by the split's tokens t_1..t_N (documents separated by
`<|endoftext|>`, which are scored too: the model predicts where a document ends). The leading
`<|endoftext|>` is context only: the first token of the split is predicted from it alone, as a model
trained on packed documents sees the start of every document. Every t_i is scored exactly once.

Window k scores the targets t_{k*S+1} .. t_{(k+1)*S} (S = stride) from the up to C (context) tokens before
each of them: its input is stream[max(0, (k+1)*S - C) : (k+1)*S]. With S = C the windows do not overlap;
with S < C each window scores only its last S tokens, with the earlier ones as context, so every target
after the first C has at least C - S tokens of context. The last window is partial: the positions past the end
of the stream are padding, masked out of both loss and count. When C >= N + S - 1, no window reaches back
past the start of the stream, every target sees everything before it, and every stride gives the same total.

Logits exist only at scored positions and only for a chunk of them at a time (memory does not grow with the
split or the batch); the totals are float64 sums.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lmtrain.data.loader import eval_starts, make_batch
from lmtrain.eval.loss import loss_sums
from lmtrain.model.base import CausalLM
from lmtrain.runtime import eval_mode


def plan_windows(n_tokens: int, context: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, first) of each window, in stream positions: inputs stream[begin:end], targets from `first`.

    Stream position 0 is the leading <|endoftext|>; the split's tokens are positions 1..n_tokens. The window
    predicts stream[j + 1] from inputs up to stream[j] and scores the targets first..min(end, n_tokens).
    """
    if not 1 <= stride <= context:
        raise ValueError(f"stride={stride} must be between 1 and context={context}")
    for k in range(math.ceil(n_tokens / stride)):
        end = (k + 1) * stride
        yield max(0, end - context), end, k * stride + 1


def window_arrays(
    stream: np.ndarray, window: tuple[int, int, int], *, context: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and targets (-100 where not scored) of one window (begin, end, first), padded to `context`."""
    begin, end, first = window
    n_tokens = len(stream) - 1
    inputs = np.full(context, pad_id, dtype=np.int64)
    targets = np.full(context, -100, dtype=np.int64)
    real = stream[begin : min(end, n_tokens + 1)]
    inputs[: len(real)] = real
    last = min(end, n_tokens)
    targets[first - 1 - begin : last - begin] = stream[first : last + 1]
    return inputs, targets


@dataclass(frozen=True)
class Scores:
    """Summed negative log-likelihood (nats) over the scored tokens."""

    nll: float
    tokens: int
    windows: int


def score_tokens(
    model: CausalLM,
    tokens: np.ndarray,
    *,
    context: int,
    stride: int,
    batch_size: int,
    eot_id: int,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Scores:
    """Total NLL of every token of `tokens` under `model`, with sliding windows (see the module docstring)."""
    stream = np.concatenate([np.array([eot_id], dtype=np.int64), np.asarray(tokens, dtype=np.int64)])
    n_tokens = len(tokens)
    total = 0.0
    count = 0
    windows = list(plan_windows(n_tokens, context, stride))
    with eval_mode(model), torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            pairs = [window_arrays(stream, w, context=context, pad_id=eot_id) for w in windows[i : i + batch_size]]
            x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)  # (B, C)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)  # (B, C)
            with autocast():
                nll, scored = model.nll(model.hidden(x), y)
            total += float(nll)
            count += scored
    if count != n_tokens:
        raise AssertionError(f"scored {count} tokens, expected {n_tokens}")
    return Scores(total, count, len(windows))


def score_windows(
    model: CausalLM,
    tokens: np.ndarray,
    *,
    context: int,
    windows: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Scores:
    """Total NLL over the windows `train` validates on: the first `windows` windows of `context` + 1 tokens cut from
    the split's start (0: every whole window; `data/loader.eval_starts`), no leading end-of-text, the tail after the
    last whole window unscored, summed by the trainer's own `loss_sums`: their mean is a run's validation loss at
    the same weights."""
    starts = eval_starts(len(tokens), context, windows)
    if len(starts) == 0:
        raise ValueError(f"the split has {len(tokens):,} tokens: no window of {context} + 1 fits")
    batches = (
        make_batch(tokens, starts[i : i + batch_size], context, device) for i in range(0, len(starts), batch_size)
    )
    total, count = loss_sums(model, batches, autocast)  # batches: (B, C) inputs and targets
    return Scores(total, count, len(starts))


@dataclass(frozen=True)
class PerplexityReport:
    """Perplexities of one split; the field names are `lmtrain eval --json`'s keys."""

    nll_per_token: float
    token_ppl: float
    word_ppl: float | None
    """None where only some windows were scored (`--windows`): words and bytes are counted for the whole split."""
    bits_per_byte: float | None
    tokens: int
    original_tokens: int
    bytes: int
    seconds: float
    windows: int
    context: int
    stride: int


def perplexity_report(
    scores: Scores,
    *,
    original_tokens: int,
    n_bytes: int,
    context: int,
    stride: int,
    seconds: float,
    whole: bool = True,
) -> PerplexityReport:
    """Token perplexity, word perplexity (per original token: words + lines) and bits per UTF-8 byte; the last two
    only where `scores` cover the whole split (`whole`)."""
    return PerplexityReport(
        nll_per_token=scores.nll / scores.tokens,
        token_ppl=math.exp(scores.nll / scores.tokens),
        word_ppl=math.exp(scores.nll / original_tokens) if whole else None,
        bits_per_byte=scores.nll / math.log(2) / n_bytes if whole else None,
        tokens=scores.tokens,
        original_tokens=original_tokens,
        bytes=n_bytes,
        seconds=seconds,
        windows=scores.windows,
        context=context,
        stride=stride,
    )
