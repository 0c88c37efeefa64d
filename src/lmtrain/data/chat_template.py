"""Rendering conversations with a tokenizer's Jinja chat template, as transformers' `apply_chat_template` renders them
(a sandboxed environment, `trim_blocks` and `lstrip_blocks`, `raise_exception`, the tokenizer's bos and eos tokens),
and the ids of the rendered text with its special tokens standing for their ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import DataError

ROLES = ("system", "user", "assistant")


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, str]],
    *,
    add_generation_prompt: bool,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """`messages` ({"role", "content"} each) rendered with `template`; a template error is a DataError."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> Any:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except jinja2.TemplateError as exc:
        raise DataError(f"the chat template failed to render: {exc}") from None


def chat_prompt(tokenizer: Tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The ids of `messages` rendered with the tokenizer's chat template, ready for the assistant's reply; a
    tokenizer without a template is a DataError."""
    template = tokenizer.chat_template
    if template is None:
        raise DataError(f"{tokenizer.describe()} has no chat template; give the prompt as plain text without --chat")
    for message in messages:
        if message.get("role") not in ROLES:
            raise DataError(f"a message has role {message.get('role')!r}; use one of {', '.join(ROLES)}")
    text = render_chat(
        template,
        messages,
        add_generation_prompt=True,
        bos_token=tokenizer.decode([tokenizer.bos_id]),
        eos_token=tokenizer.decode([tokenizer.eot_id]),
    )
    return tokenizer.encode_rendered(text)
