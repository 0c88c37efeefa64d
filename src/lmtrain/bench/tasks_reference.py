"""The plain reference of benchmark scoring: one item at a time, every option as a full row, the logits of every
position, the rules written out directly (as nanochat's `core_eval.py` does). `lmtrain bench tasks` times the
batched scorer against it and the tests check item by item that both agree; it shares no code with `tasks/encode.py`
and `tasks/score.py`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lmtrain.model.base import CausalLM
from lmtrain.tasks.items import render
from lmtrain.tasks.spec import TaskSpec


def _shared(seqs: Sequence[list[int]]) -> int:
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


@torch.no_grad()
def reference_item(
    model: CausalLM, task: TaskSpec, items: Sequence[dict[str, Any]], index: int, *, tokenizer, bos: int
) -> tuple[bool, list[float]]:
    """(right, per-option mean losses) of item `index` of the shuffled, capped `items` of `task`."""
    prompts = render(task, items, index)
    seqs = [[bos, *tokenizer.encode(text)] for text in prompts.texts]
    if task.type == "multiple_choice":
        start = _shared(seqs)
        spans = [(start, len(s)) for s in seqs]
    elif task.type == "schema":
        end = _shared([s[::-1] for s in seqs])
        spans = [(len(s) - end, len(s)) for s in seqs]
    else:
        without, with_ = seqs
        start = len(without) if with_[: len(without)] == without else _shared(seqs)
        seqs, spans = [with_], [(start, len(with_))]
    max_len = model.config.max_seq_len
    means, right = [], True
    for seq, (start, end) in zip(seqs, spans):
        cut = max(0, len(seq) - max_len)
        seq, start, end = seq[cut:], max(1, start - cut), end - cut
        idx = torch.tensor([seq], device=model.output_weight.device)
        logits, _ = model(idx)  # (1, T, V)
        targets = idx[0, start:end]
        predicted = logits[0, start - 1 : end - 1].float()  # (n, V)
        losses = F.cross_entropy(predicted, targets, reduction="none")
        means.append(math.fsum(losses.tolist()) / len(targets) if len(targets) else math.nan)
        right = right and len(targets) > 0 and bool((predicted.argmax(-1) == targets).all())
    if prompts.gold is None:
        return right, means
    return means.index(min(means)) == prompts.gold, means
