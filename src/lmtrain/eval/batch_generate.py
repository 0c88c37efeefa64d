"""Replies to many prompts of different lengths decoded together with one KV cache (the GSM8K benchmark's generation).

The prompts are left-padded to the longest. Each row carries its own positions (0 at its first real token) and
attends only to its own tokens, padding never, through a `Packing` given beside the cache; a padding token attends to
itself alone, so no softmax row is empty. Each row therefore computes what it computes alone (tested against
`generate` one prompt at a time). A row stops at any stop id; the batch stops when every row has.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from lmtrain.eval.generate import Sampling
from lmtrain.model.base import CausalLM
from lmtrain.model.packing import Packing
from lmtrain.runtime import eval_mode


@torch.no_grad()
def generate_batch(
    model: CausalLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    stop_ids: Collection[int],
    sampling: Sampling | None = None,
) -> list[list[int]]:
    """The new tokens of each prompt (greedy unless `sampling`), up to and including the stop id it reached, or
    `max_new_tokens` (fewer where the longest prompt leaves less of the model's context)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    sampling = sampling or Sampling(temperature=0.0, top_k=None, top_p=None, generator=None)
    device = model.output_weight.device
    B, longest = len(prompts), max(len(p) for p in prompts)
    if longest > model.config.max_seq_len:
        raise ValueError(f"a prompt has {longest} tokens; the model's context is {model.config.max_seq_len}")
    steps = min(max_new_tokens, model.config.max_seq_len - longest)
    pad = torch.tensor([longest - len(p) for p in prompts], device=device)  # (B,) padding in front of each row
    ids = torch.zeros(B, longest, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
    total = longest + steps
    index = torch.arange(total, device=device)
    real = index[None, :] >= pad[:, None]  # (B, total): which cache positions hold a row's own tokens
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    with eval_mode(model):
        cache = model.new_cache(batch_size=B, max_len=max(total, 1))
        causal = torch.ones(longest, longest, dtype=torch.bool, device=device).tril()
        own = torch.eye(longest, dtype=torch.bool, device=device)
        mask = (causal[None] & real[:, None, :longest]) | own[None]  # (B, T, T)
        positions = (index[None, :longest] - pad[:, None]).clamp(min=0)  # (B, T)
        feed = ids
        for step in range(steps):
            logits, _ = model(feed, cache=cache, packing=Packing(positions, mask[:, None]))
            tok = sampling.next_token(logits[:, -1, :])  # (B, 1)
            for row in torch.nonzero(~done).flatten().tolist():
                out[row].append(int(tok[row, 0]))
            done |= torch.isin(tok[:, 0], stops)
            if bool(done.all()) or step == steps - 1:
                break
            at = longest + step  # the cache position of the token fed next
            positions = at - pad[:, None]  # (B, 1)
            mask = real[:, None, : at + 1]  # (B, 1, at + 1)
            feed = tok
    return out
