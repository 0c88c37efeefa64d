"""Sampling from a language model with a KV cache: temperature, top-k, top-p; greedy at temperature 0.

A model accepts at most max_seq_len positions (GPT-2's learned table has no more; the modern block was never trained
on more), so generation stops there: prompt + new tokens never exceed max_seq_len.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.model.base import CausalLM
from lmtrain.runtime import eval_mode


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits (B, V) with everything outside the top-k and the top-p nucleus set to -inf."""
    if top_k is not None and top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Next token ids (B, 1) from last-position logits (B, V): argmax at temperature 0, else a sample."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: CausalLM,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eot_id: int | None = None,
    stop_ids: Collection[int] = (),
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Prompt (B, T) followed by up to `max_new_tokens` new tokens, stopping at `eot_id` or any of `stop_ids` (a
    chat model's end of turn and end of text), or at max_seq_len.

    With `use_cache`, each step feeds only the newest token and reuses cached keys and values; without it,
    the whole sequence is recomputed every step (same tokens, slower). Rows that reached a stop id are padded
    with the one they reached while the others continue. The model's train/eval mode is restored afterwards.
    """
    sample = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    stops = sorted(set(stop_ids) | ({eot_id} if eot_id is not None else set()))
    with eval_mode(model):
        return _generate(model, prompt, max_new_tokens=max_new_tokens, sample=sample, stops=stops, use_cache=use_cache)


def continuation(model: CausalLM, prompt: np.ndarray, new_tokens: int, *, tokenizer: Tokenizer, seed: int) -> str:
    """The text of a sampled continuation (temperature 0.8, top-k 50) of `prompt` (token ids), with the prompt."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt, dtype=torch.long, device=device)[None]  # (1, T)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, ids, new_tokens, temperature=0.8, top_k=50, eot_id=tokenizer.eot_id, generator=generator)
    return tokenizer.decode(out[0].tolist())


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next token is chosen from the logits."""

    temperature: float
    top_k: int | None
    top_p: float | None
    generator: torch.Generator | None

    def next_token(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token ids (B, 1) from last-position logits (B, V)."""
        return next_token(logits, self.temperature, self.top_k, self.top_p, self.generator)


def _generate(
    model: CausalLM,
    prompt: torch.Tensor,
    *,
    max_new_tokens: int,
    sample: Sampling,
    stops: list[int],
    use_cache: bool,
) -> torch.Tensor:
    cfg = model.config
    B, T = prompt.shape
    if T == 0:
        raise ValueError("the prompt is empty")
    if T > cfg.max_seq_len:
        raise ValueError(f"the prompt has {T} tokens; the model's context is {cfg.max_seq_len}")
    steps = min(max_new_tokens, cfg.max_seq_len - T)
    cache = model.new_cache(batch_size=B) if use_cache else None
    out = prompt
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    stop = torch.tensor(stops, dtype=torch.long, device=prompt.device)  # (S,)
    last = torch.zeros(B, 1, dtype=torch.long, device=prompt.device)  # the stop id each finished row reached
    feed = prompt
    for _ in range(steps):
        logits, _ = model(feed if use_cache else out, cache=cache)
        tok = sample.next_token(logits[:, -1, :])  # (B, 1)
        if stops:
            tok = torch.where(done[:, None], last, tok)
            reached = torch.isin(tok[:, 0], stop) & ~done
            last = torch.where(reached[:, None], tok, last)
            done |= reached
        out = torch.cat([out, tok], dim=1)
        feed = tok
        if stops and bool(done.all()):
            break
    return out
