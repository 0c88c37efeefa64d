"""The tokenizer a chat run renders with: the model's own and its chat template, the template --chat-template names,
or ChatML for a model that has no template.

`--chat-template chatml` gives ChatML (`<|im_start|>role\\n...<|im_end|>\\n`, the template of SmolLM2, Qwen and TRL's
`setup_chat_format`). Where the vocabulary lacks ChatML's two special tokens they are added after its last id, as
TRL and transformers add them, and `<|im_end|>` becomes the eos a released configuration names; documents stay
separated by the end-of-document token. The model's vocabulary grows to match when the run starts from a trained
model (`train/init_from.grow_vocabulary`). The template chosen is folded into the run's tokenizer, so that every
checkpoint, `chat`, and both exports (the transformers folder's tokenizer config, GGUF's `tokenizer.chat_template`)
render exactly what was trained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lmtrain.data.chat import CHATML_NAME
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gguf_vocab import tokenizer_fields, tokenizer_files
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer, SpecTokenizer
from lmtrain.errors import ConfigError, DataError

CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML as TRL's `setup_chat_format` writes it."""
NEEDS_TEMPLATE = "give one with --chat-template FILE, or --chat-template chatml to add ChatML's tokens and template"


def check_template_choice(choice: str | None) -> None:
    """A ConfigError for a --chat-template that is neither chatml nor an existing file (before any model is read)."""
    if choice not in (None, CHATML_NAME) and not Path(choice).is_file():
        raise ConfigError(
            f"--chat-template {choice}: no such file; give a file holding a Jinja chat template, or {CHATML_NAME}"
        )


def chat_tokenizer(tokenizer: Tokenizer, choice: str | None, *, may_add: bool = True) -> Tokenizer:
    """`tokenizer` with the chat template `choice` names (None: its own, which `ChatRenderer` requires; "chatml"; else
    a Jinja file's path); ChatML's tokens are added where it lacks them only when `may_add` (training; a trained model
    cannot use new ids)."""
    check_template_choice(choice)
    if choice is None:
        return tokenizer
    if choice == CHATML_NAME:
        if all(tokenizer.special_id(t) is not None for t in CHATML_TOKENS):
            return with_template(tokenizer, CHATML)
        if not may_add:
            raise DataError(
                f"{tokenizer.describe()} has no ChatML tokens, and the model never saw them; fine-tune it with "
                f"--dataset chat --chat-template {CHATML_NAME} first (which adds them), or give a template FILE"
            )
        return add_chatml(tokenizer)
    try:
        text = Path(choice).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"--chat-template {choice}: not a readable UTF-8 file ({exc})") from None
    return with_template(tokenizer, text)


def with_template(tokenizer: Tokenizer, template: str) -> Tokenizer:
    """`tokenizer` rendering with `template`; one without special tokens cannot render a template."""
    if not isinstance(tokenizer, HFTokenizer):
        raise DataError(
            f"{tokenizer.describe()} has no special tokens for a chat template to mark turns with; use --chat-template "
            f"{CHATML_NAME} to add ChatML's"
        )
    return tokenizer.with_config(chat_template=template)


def add_chatml(tokenizer: Tokenizer) -> Tokenizer:
    """`tokenizer` with ChatML's special tokens added after its last id (those it has kept) and ChatML's template;
    `<|im_end|>` is its eos, its end-of-document token stays."""
    vocab = tokenizer.bpe_vocab()
    tokens = list(vocab.tokens) + [None] * (tokenizer.vocab_size - len(vocab.tokens))
    special = set(vocab.special)
    for text in CHATML_TOKENS:
        if text in tokens:
            special.add(tokens.index(text))
        else:
            special.add(len(tokens))
            tokens.append(text)
    grown = dataclasses.replace(vocab, tokens=tokens, special=frozenset(special))
    fields = tokenizer_fields(
        grown,
        vocab_size=len(tokens),
        bos_id=tokenizer.bos_id,
        eos_id=tokens.index(CHATML_TOKENS[1]),
        add_bos=tokenizer.add_bos,
        chat_template=CHATML,
    )
    where = Path(f"{tokenizer.name}+chatml")
    return SpecTokenizer(where, built=tokenizer_files(fields, where))
