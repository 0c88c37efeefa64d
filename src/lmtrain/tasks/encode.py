"""An item's prompts as token sequences with the span each option is scored on, and those sequences laid out in one
packed row (their shared prefix once, each option's rest after it).

The rules (DCLM / nanochat):
- each prompt is tokenized with the tokenizer's beginning-of-sequence token in front;
- multiple choice: an option's scored tokens are those after the longest common token prefix of all the prompts;
  schema: those of the longest common token suffix; language modelling: those after the prompt without the
  continuation, which must be a token prefix of the prompt with it (where it is not, lmtrain scores the tokens
  after their longest common prefix and counts the item in `not_prefix`);
- a sequence longer than the model's context keeps its last tokens; a scored token needs a token before it, so a
  continuation longer than the whole context loses its first tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmtrain.tasks.items import Prompts


@dataclass(frozen=True)
class Encoded:
    """One item as the model scores it."""

    options: list[list[int]]
    """Each option's token ids after the crop (multiple choice and schema: one per option; language modelling:
    one)."""
    spans: list[tuple[int, int]]
    """[start, end) of each option's scored tokens in its sequence (start >= 1: the token before predicts it)."""
    gold: int | None
    not_prefix: bool = False
    """Language modelling only: the prompt without the continuation was not a token prefix of the prompt with it."""


@dataclass(frozen=True)
class Unit:
    """Sequences of one item packed into one row: their longest common prefix once, then each one's rest."""

    tokens: list[int]
    positions: list[int]
    branch: list[int]
    """0 for the shared prefix, k + 1 for the tokens of the unit's k-th sequence."""
    scored: list[tuple[int, list[int], list[int]]]
    """Per sequence: the option it is, the row indices whose next-token predictions are scored, and their targets."""

    def __len__(self) -> int:
        return len(self.tokens)


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest token prefix every sequence shares."""
    shortest = min(len(s) for s in seqs)
    for i in range(shortest):
        token = seqs[0][i]
        if any(s[i] != token for s in seqs):
            return i
    return shortest


def common_suffix(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest token suffix every sequence shares."""
    return common_prefix([list(reversed(s)) for s in seqs])


def encode_item(kind: str, prompts: Prompts, ids: Sequence[Sequence[int]], *, bos: int, max_len: int) -> Encoded:
    """The scored sequences of an item whose prompts tokenized to `ids` (without the BOS, which goes in front)."""
    seqs = [[bos, *t] for t in ids]
    not_prefix = False
    if kind == "multiple_choice":
        start = common_prefix(seqs)
        spans = [(start, len(s)) for s in seqs]
    elif kind == "schema":
        suffix = common_suffix(seqs)
        spans = [(len(s) - suffix, len(s)) for s in seqs]
    else:
        without, with_ = seqs
        start = len(without)
        if with_[:start] != without:
            start, not_prefix = common_prefix(seqs), True
        seqs, spans = [with_], [(start, len(with_))]
    cropped, cropped_spans = [], []
    for seq, (start, end) in zip(seqs, spans):
        cut = max(0, len(seq) - max_len)
        cropped.append(seq[cut:])
        cropped_spans.append((max(1, start - cut), end - cut))
    return Encoded(cropped, cropped_spans, prompts.gold, not_prefix)


def pack_row(item: Encoded, options: Sequence[int]) -> Unit:
    """The item's `options` in one row: tokens equal at equal positions from the start are computed once (their
    hidden states are the same in every sequence that has them, attention being causal)."""
    seqs = [item.options[k] for k in options]
    shared = common_prefix(seqs) if len(seqs) > 1 else len(seqs[0])
    tokens, positions, branch = list(seqs[0][:shared]), list(range(shared)), [0] * shared
    scored = []
    for b, k in enumerate(options):
        seq, (start, end) = item.options[k], item.spans[k]
        offset = len(tokens) - shared  # row index of position p >= shared is offset + p
        tokens += seq[shared:]
        positions += range(shared, len(seq))
        branch += [b + 1] * (len(seq) - shared)
        rows = [p if p < shared else offset + p for p in range(start - 1, end - 1)]
        scored.append((k, rows, seq[start:end]))
    return Unit(tokens, positions, branch, scored)


def pack(item: Encoded, d_model: int) -> list[Unit]:
    """The rows an item is scored in: all its sequences in one row (the shared prefix once) where that costs less
    than one row per sequence. A packed row's attention spans the whole row, masked: where the options share little
    (prompts cropped to the context lose their common start), separate rows are cheaper. Cost of a row of n tokens:
    n x (24 d^2 + 4 n d), the blocks' matrices and attention per layer."""
    every = list(range(len(item.options)))
    packed = pack_row(item, every)

    def cost(n: int) -> int:
        return n * (24 * d_model * d_model + 4 * n * d_model)

    if len(every) == 1 or cost(len(packed)) <= sum(cost(len(s)) for s in item.options):
        return [packed]
    return [pack_row(item, [k]) for k in every]
