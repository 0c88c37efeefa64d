"""A tokenizer's Jinja chat template, rendered as transformers' `apply_chat_template` renders it: a sandboxed
environment with `trim_blocks` and `lstrip_blocks`, `raise_exception`, the tokenizer's bos and eos tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmtrain.errors import DataError


class ChatTemplate:
    """One template, compiled once; `render` gives the text of a conversation."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> Any:
            raise jinja2.TemplateError(message)

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = raise_exception
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise DataError(f"the chat template is not valid Jinja: {exc}") from None
        self.source = source
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool, where: str = "") -> str:
        """`messages` ({"role", "content"} each) as text; a template error is a DataError naming `where`."""
        import jinja2

        try:
            return self._template.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt, **self._tokens
            )
        except jinja2.TemplateError as exc:
            place = f" for {where}" if where else ""
            raise DataError(f"the chat template failed to render{place}: {exc}") from None


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, str]],
    *,
    add_generation_prompt: bool,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """`messages` rendered with `template` (compiled for this one call)."""
    compiled = ChatTemplate(template, bos_token=bos_token, eos_token=eos_token)
    return compiled.render(messages, add_generation_prompt=add_generation_prompt)
