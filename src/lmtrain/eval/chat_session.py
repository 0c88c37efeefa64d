"""A multi-turn conversation with a model, through its chat template, with one KV cache kept across turns.

Each turn renders the whole conversation with the template (`ChatRenderer.prompt`, what training renders) and feeds
the model only the ids after the longest prefix its cache already holds: the cache rolls back to where the new
rendering first differs from what was computed (the template may write a reply's ids differently from the ones the
model sampled, or add text after the end-of-turn token), never recomputing the conversation from its start. A reply
ends at any of the tokenizer's stop ids (end of turn, end of text: a set), after `max_new_tokens`, or at the model's
context; its text streams as it is sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lmtrain.data.chat.render import ChatRenderer
from lmtrain.errors import ConfigError
from lmtrain.eval.generate import Sampling
from lmtrain.model.base import CausalLM
from lmtrain.runtime import eval_mode


@dataclass(frozen=True)
class Reply:
    text: str
    new_tokens: int
    stop: str
    """"end of turn", "max new tokens" or "context limit"."""
    reused: int
    """Positions of the prompt the KV cache already held (not recomputed)."""


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class ChatSession:
    """The messages so far and the KV cache of the ids the model has computed."""

    def __init__(
        self,
        model: CausalLM,
        renderer: ChatRenderer,
        *,
        sampling: Sampling,
        max_new_tokens: int,
        system: str | None = None,
    ) -> None:
        self.model, self.renderer, self.sampling, self.max_new_tokens = model, renderer, sampling, max_new_tokens
        self.device = next(model.parameters()).device
        self.cache = model.new_cache(batch_size=1)
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.cached: list[int] = []  # the ids whose keys and values the cache holds, in order
        self.clear()

    def clear(self, system: str | None = None) -> None:
        """Start a new conversation (with `system` as its system message, where given; else the current one)."""
        if system is not None:
            self.system = system
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Last-position logits (1, V) after feeding `ids` into the cache."""
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        logits, _ = self.model(x, cache=self.cache)
        self.cached += ids
        return logits[:, -1, :]

    @torch.no_grad()
    def reply(self, text: str, on_text: Callable[[str], None] | None = None) -> Reply:
        """The model's reply to the user message `text`; `on_text` gets each piece of it as it is sampled."""
        tokenizer, limit = self.renderer.tokenizer, self.model.config.max_seq_len
        messages = [*self.messages, {"role": "user", "content": text}]
        prompt = self.renderer.prompt(messages)
        if len(prompt) >= limit:
            raise ConfigError(
                f"the conversation is {len(prompt):,} tokens; the model's context is {limit:,}, which leaves no room "
                f"for a reply; start again (/clear in the chat)"
            )
        keep = min(_common_prefix(self.cached, prompt), len(prompt) - 1)  # the last prompt id is always fed
        self.cache.length, self.cached = keep, self.cached[:keep]
        stops = self.renderer.end_of_turn
        new: list[int] = []
        shown, stop = "", "max new tokens"
        with eval_mode(self.model):
            logits = self._forward(prompt[keep:])
            while len(new) < self.max_new_tokens:
                token = int(self.sampling.next_token(logits)[0, 0])
                if token in stops:
                    stop = "end of turn"
                    break
                new.append(token)
                decoded = tokenizer.decode(new)
                if on_text is not None and not decoded.endswith("\ufffd"):  # wait for a character's last byte
                    on_text(decoded[len(shown) :])
                    shown = decoded
                if len(self.cached) >= limit:
                    stop = "context limit"
                    break
                logits = self._forward([token])
        answer = tokenizer.decode(new)
        if on_text is not None and len(answer) > len(shown):
            on_text(answer[len(shown) :])
        self.messages = [*messages, {"role": "assistant", "content": answer}]
        return Reply(answer, len(new), stop, keep)
