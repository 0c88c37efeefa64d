"""llama.cpp through `llama-cpp-python`, the reference every GGUF claim is checked against (`make llama` builds it):
its tokenizer, its per-position logits, its greedy decoding and its perplexity over given windows, each computed by
llama.cpp's own CPU code from the GGUF file. Used by the GGUF tests and `bench/gguf.py`.

The KV cache is kept in f32 (llama.cpp's default is f16), so an f32 export's logits are llama.cpp's arithmetic on the
file's weights rather than a rounding of its keys and values.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

F32 = 0
"""GGML's type id of f32 (for the KV cache)."""


class GeluTable(torch.nn.Module):
    """GELU as llama.cpp's CPU backend computes it (`ggml_vec_gelu_f32` under GGML_GELU_FP16, which ggml-cpu always
    defines): the input rounded to fp16 and looked up in a table of fp16 tanh-GELU values; x <= -10 gives 0, x >= 10
    gives x. Its rounding is why a `gpt2` export's logits differ from lmtrain's exact GELU by more than float32's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        looked_up = torch.nn.functional.gelu(x.half().float(), approximate="tanh").half().float()
        return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, looked_up))


def with_llama_cpp_gelu(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with each GELU replaced by llama.cpp's fp16 table (`GeluTable`); a model without GELU unchanged."""
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.GELU):
                setattr(module, name, GeluTable())
    return model


@contextlib.contextmanager
def llama(path: Path, *, n_ctx: int = 512, threads: int = 1, vocab_only: bool = False) -> Iterator[Any]:
    """The GGUF file at `path` loaded by llama.cpp (every position's logits kept), closed on exit."""
    from llama_cpp import Llama

    model = Llama(
        str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        logits_all=True,
        vocab_only=vocab_only,
        verbose=False,
        n_threads=threads,
        n_threads_batch=threads,
        type_k=F32,
        type_v=F32,
        seed=0,
    )
    try:
        yield model
    finally:
        model.close()


def tokens(model: Any, text: str, *, special: bool = False) -> list[int]:
    """llama.cpp's token ids of `text`, no beginning token added; with `special`, special-token text stands for its
    id (as in a rendered chat template), else it is plain text."""
    return model.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """llama.cpp's next-token logits (T, V) at every position of `ids`, in one batch from an empty cache."""
    model.reset()
    model.eval(list(ids))
    return np.array(model.scores[: len(ids)], dtype=np.float32)


def greedy(model: Any, prompt: Sequence[int], new_tokens: int, *, stop_ids: Collection[int] = ()) -> list[int]:
    """`prompt` followed by up to `new_tokens` tokens, each llama.cpp's most likely next token, decoded one at a time
    with its KV cache; it ends after the first of `stop_ids` it decodes."""
    model.reset()
    model.eval(list(prompt))
    out = list(prompt)
    for _ in range(new_tokens):
        nxt = int(np.argmax(model.scores[model.n_tokens - 1]))
        out.append(nxt)
        if nxt in stop_ids:
            break
        model.eval([nxt])
    return out


def window_nll(model: Any, windows: Sequence[Sequence[int]]) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, tokens scored) of each window's tokens after its first, from
    llama.cpp's logits (log-softmax in float64), as lmtrain scores the same windows."""
    total, count = 0.0, 0
    for window in windows:
        z = logits(model, window[:-1]).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total -= float(logp[np.arange(len(window) - 1), np.asarray(window[1:])].sum())
        count += len(window) - 1
    return total, count


def perplexity(nll: float, count: int) -> float:
    """exp of the mean negative log-likelihood."""
    return math.exp(nll / count)


def stream_nll(model: Any, tokens: np.ndarray, *, context: int, bos_id: int) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens scored) of every token of `tokens` after a leading `bos_id`, cut into
    back-to-back windows of `context` exactly as `lmtrain eval` cuts them (`eval/perplexity.plan_windows`), each
    scored from llama.cpp's logits."""
    from lmtrain.eval.perplexity import plan_windows

    stream = np.concatenate([np.array([bos_id], dtype=np.int64), np.asarray(tokens, dtype=np.int64)])
    total, count = 0.0, 0
    for begin, end, first in plan_windows(len(tokens), context, context):
        last = min(end, len(tokens))
        z = logits(model, stream[begin:last].tolist()).astype(np.float64)  # row j predicts stream[begin + j + 1]
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rows = np.arange(first - 1 - begin, last - begin)
        total -= float(logp[rows, stream[first : last + 1]].sum())
        count += len(rows)
    return total, count
