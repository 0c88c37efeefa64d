"""ChatCORE's scoring (after nanochat's ChatCORE): every item is one user message rendered with the model's own chat
template (`ChatRenderer.prompt`, what `chat` asks), its reply scored.

- chat_choice: the prompts of a batch are right-padded (a causal model's last real position sees no padding) and run
  once; the choice is the letter whose token has the highest logit at the reply's first position among the item's
  letters (the first of equal ones). A letter that is not one token of the vocabulary is a DataError.
- chat_answer: greedy replies of up to the task's `reply_tokens`, the prompts of similar length decoded together
  with one KV cache (`eval/batch_generate.py`); right when the reply's final number equals the answer's
  (`answers.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from lmtrain.data.chat.render import ChatRenderer
from lmtrain.errors import DataError
from lmtrain.eval.batch_generate import generate_batch
from lmtrain.model.base import CausalLM
from lmtrain.runtime import eval_mode
from lmtrain.tasks.answers import LETTERS, choice_message, final_number
from lmtrain.tasks.score import Outcome, decide
from lmtrain.tasks.spec import TaskSpec

CHOICE_BATCH = 16
"""chat_choice prompts per forward pass."""
ANSWER_BATCH = 16
"""chat_answer prompts decoded together."""


def chat_prompts(
    renderer: ChatRenderer, spec: TaskSpec, items: Sequence[dict[str, Any]], max_len: int
) -> list[list[int]]:
    """The prompt ids of each item, as the model's chat template renders its one user message."""
    prompts = []
    for i, item in enumerate(items):
        text = item["question"] if spec.type == "chat_answer" else choice_message(item["query"], item["choices"])
        ids = renderer.prompt([{"role": "user", "content": text}], where=f"task {spec.name} item {i}")
        if len(ids) >= max_len:
            raise DataError(
                f"task {spec.name}: an item's prompt has {len(ids):,} tokens, the model's context {max_len:,}; "
                f"leave the task out or use a model with a longer context"
            )
        prompts.append(ids)
    return prompts


def letter_ids(renderer: ChatRenderer, count: int) -> list[int]:
    """The token of each of the first `count` letters as a reply's first token."""
    found = []
    for letter in LETTERS[:count]:
        ids = renderer.tokenizer.encode(letter)
        if len(ids) != 1:
            raise DataError(f"the letter {letter} is {len(ids)} tokens in {renderer.tokenizer.describe()}, not one")
        found.append(ids[0])
    return found


@torch.no_grad()
def score_chat_items(
    model: CausalLM,
    renderer: ChatRenderer,
    spec: TaskSpec,
    items: Sequence[dict[str, Any]],
    *,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> list[Outcome]:
    """The outcome of every item of a chat task."""
    prompts = chat_prompts(renderer, spec, items, model.config.max_seq_len)
    with eval_mode(model), autocast():
        if spec.type == "chat_choice":
            return _choices(model, renderer, items, prompts, device)
        return _answers(model, renderer, items, prompts, spec.reply_tokens)


def by_length(prompts: Sequence[Sequence[int]], size: int) -> list[list[int]]:
    """Indices of `prompts`, longest first, in batches of `size` (little padding in each)."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


def _choices(
    model: CausalLM,
    renderer: ChatRenderer,
    items: Sequence[dict[str, Any]],
    prompts: list[list[int]],
    device: torch.device,
) -> list[Outcome]:
    letters = letter_ids(renderer, max(len(item["choices"]) for item in items))
    outcomes: list[Outcome | None] = [None] * len(items)
    for batch in by_length(prompts, CHOICE_BATCH):
        longest = len(prompts[batch[0]])
        ids = torch.zeros(len(batch), longest, dtype=torch.long, device=device)
        for row, i in enumerate(batch):
            ids[row, : len(prompts[i])] = torch.as_tensor(prompts[i])
        last = torch.tensor([len(prompts[i]) - 1 for i in batch], device=device)
        h = model.hidden(ids)  # (B, T, C)
        logits = model.logits(h[torch.arange(len(batch), device=device), last]).float()  # (B, V)
        for row, i in enumerate(batch):
            n = len(items[i]["choices"])
            scores = torch.log_softmax(logits[row, letters[:n]], dim=-1)  # among the item's letters
            outcomes[i] = decide([-float(s) for s in scores], False, items[i]["gold"])
    return [o for o in outcomes if o is not None]


def _answers(
    model: CausalLM,
    renderer: ChatRenderer,
    items: Sequence[dict[str, Any]],
    prompts: list[list[int]],
    max_new_tokens: int,
) -> list[Outcome]:
    tokenizer = renderer.tokenizer
    stops = tokenizer.stop_ids
    outcomes: list[Outcome | None] = [None] * len(items)
    for batch in by_length(prompts, ANSWER_BATCH):
        replies = generate_batch(model, [prompts[i] for i in batch], max_new_tokens, stop_ids=stops)
        for i, reply in zip(batch, replies):
            text = tokenizer.decode([t for t in reply if t not in stops])
            got, want = final_number(text), final_number(items[i]["answer"])
            outcomes[i] = Outcome(got is not None and got == want, None, (), reply=text)
    return [o for o in outcomes if o is not None]
