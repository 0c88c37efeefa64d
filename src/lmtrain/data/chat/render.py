"""The one renderer of conversations: the model's chat template gives the ids the model sees, which of them the loss
trains, and the prompt `generate --chat` and `chat` feed the model. Training and inference render through the same
`ChatRenderer`, so what is trained is exactly what is asked at inference.

The mask is derived turn by turn, without `{% generation %}` markers (which most released templates lack): for each
assistant message i, the conversation up to it is rendered with the generation prompt (the prompt inference would
give the model), then with message i and without the generation prompt. The second rendering must extend the first;
what it adds is the reply as the template writes it. Its ids up to and including the first end-of-turn id (any of the
tokenizer's stop ids: `<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, ...) are trained; what follows it (ChatML's
newline) is template text, not trained. System, user and template text is never trained. A template that does not
render a conversation as a sequence of such extensions, or ends an assistant turn with no end-of-turn token, is a
DataError naming the conversation: training on it would teach something other than what inference asks.

Every piece is encoded on its own, as inference encodes the prompt and then appends the tokens the model generates;
special-token strings in the rendered text stand for their ids, as in transformers' `apply_chat_template`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmtrain.data.chat.conversations import ROLES, Conversation
from lmtrain.data.chat.template import ChatTemplate
from lmtrain.data.chat.tokenizer import NEEDS_TEMPLATE
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import DataError


@dataclass(frozen=True)
class Rendered:
    """One conversation as the model sees it."""

    ids: np.ndarray
    """(T,) token ids."""
    trained: np.ndarray
    """(T,) bool: ids[t] is a target of the loss (predicted from ids[:t]); never ids[0]."""
    where: str

    @property
    def trained_count(self) -> int:
        return int(self.trained.sum())


class ChatRenderer:
    """A tokenizer with its chat template (`tokenizer.chat_tokenizer` sets another)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        source = tokenizer.chat_template
        if source is None:
            raise DataError(f"{tokenizer.describe()} has no chat template; {NEEDS_TEMPLATE}")
        self.tokenizer = tokenizer
        self.template = ChatTemplate(
            source,
            bos_token=tokenizer.decode([tokenizer.bos_id]),
            eos_token=tokenizer.decode([tokenizer.eos_id]),
        )
        self.end_of_turn = tokenizer.stop_ids
        self._end_texts = sorted({tokenizer.decode([i]) for i in self.end_of_turn})

    def _text(self, messages: Sequence[Mapping[str, str]], *, generation: bool, where: str) -> str:
        return self.template.render(messages, add_generation_prompt=generation, where=where)

    def prompt(self, messages: Sequence[Mapping[str, str]], where: str = "the prompt") -> list[int]:
        """The ids of `messages` rendered for the assistant's reply (with the generation prompt)."""
        for message in messages:
            if message.get("role") not in ROLES:
                raise DataError(f"a message has role {message.get('role')!r}; use one of {', '.join(ROLES)}")
        return self.tokenizer.encode_rendered(self._text(messages, generation=True, where=where))

    def _reply(self, reply: list[int], index: int, where: str) -> list[bool]:
        ends = [i for i, t in enumerate(reply) if t in self.end_of_turn]
        if not ends:
            names = ", ".join(self._end_texts)
            raise DataError(
                f"{where}: the chat template ends assistant message {index} with no end-of-turn token (one of "
                f"{names}), so the model would never learn to stop; use a template whose turns end with one"
            )
        return [True] * (ends[0] + 1) + [False] * (len(reply) - ends[0] - 1)

    def render(self, conversation: Conversation) -> Rendered:
        """The ids of a whole conversation and which of them are trained (assistant content and end of turn)."""
        messages, where = conversation.as_dicts(), conversation.where
        ids: list[int] = []
        trained: list[bool] = []
        done = ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            for end in self._end_texts:
                if end in message["content"]:
                    raise DataError(
                        f"{where}: assistant message {i} contains the special token {end} as text, which would end "
                        f"the turn inside the reply; remove it from the data"
                    )
            prompt = self._text(messages[:i], generation=True, where=where)
            whole = self._text(messages[: i + 1], generation=False, where=where)
            if not prompt.startswith(done) or not whole.startswith(prompt):
                raise DataError(
                    f"{where}: the chat template does not render this conversation turn by turn (rendering message "
                    f"{i} changes what comes before it), so its loss mask cannot be derived; use another template"
                )
            head = self.tokenizer.encode_rendered(prompt[len(done) :])
            reply = self.tokenizer.encode_rendered(whole[len(prompt) :])
            ids += head + reply
            trained += [False] * len(head) + self._reply(reply, i, where)
            done = whole
        rest = self._text(messages, generation=False, where=where)
        if not rest.startswith(done):
            raise DataError(f"{where}: the chat template does not render this conversation turn by turn")
        tail = self.tokenizer.encode_rendered(rest[len(done) :]) if len(rest) > len(done) else []
        ids += tail
        trained += [False] * len(tail)
        if trained and trained[0]:
            raise DataError(f"{where}: the conversation renders with no prompt before the first reply")
        dtype = self.tokenizer.dtype
        return Rendered(np.asarray(ids, dtype=dtype), np.asarray(trained, dtype=bool), where)
