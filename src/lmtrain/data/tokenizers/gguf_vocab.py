"""The tokenizer a GGUF file carries (`tokenizer.ggml.*`): read back as a `tokenizers` tokenizer.json, and written from
any byte-level BPE (`BPEVocab`).

A GGUF byte-level BPE is its tokens (id order, GPT-2's byte alphabet), their types (normal, control, user-defined,
unused), its merges and the name of its cut (`pretokenizers.py`). Reading rebuilds the tokenizer.json that cuts and
merges as llama.cpp does (on the tiktoken path where it is expressible, as any tokenizer.json); writing gives llama.cpp
every key it reads, the bos/eos/padding ids always (it falls back to id 11 where they are absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmtrain.data.tokenizers.base import BPEVocab
from lmtrain.data.tokenizers.pretokenizers import PRE_TOKENIZERS, named
from lmtrain.data.tokenizers.tokenizer_json import SpecTokenizer
from lmtrain.errors import DataError
from lmtrain.gguf_file import read_gguf

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
"""llama.cpp's token types (gguf.TokenType)."""
MODEL = "gpt2"
"""`tokenizer.ggml.model` of a byte-level BPE."""
_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


class GGUFTokenizer(SpecTokenizer):
    """The byte-level BPE a GGUF file carries, as a tokenizer.json built from its `tokenizer.ggml.*` keys."""

    @classmethod
    def rebuild(cls, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        return tokenizer_files(read_gguf(path).fields, path)

    def describe(self) -> str:
        return (
            f"the tokenizer of {self.path} ({self.vocab_size:,} ids, end of document {self.eot_text} = {self.eot_id})"
        )


def tokenizer_files(fields: Mapping[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer.json, tokenizer_config.json) of the tokenizer in a GGUF file's metadata; one lmtrain does not
    rebuild exactly is a DataError naming what."""
    kind = fields.get("tokenizer.ggml.model")
    if kind != MODEL:
        raise DataError(
            f"{where} carries a {kind!r} tokenizer; lmtrain reads byte-level BPE ones ({MODEL!r}), the kind GPT-2, "
            f"Llama-3, Qwen and SmolLM use"
        )
    style = named(str(fields.get("tokenizer.ggml.pre", "")))
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    types: list[int] = list(fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    merges = [m.split(" ", 1) for m in fields.get("tokenizer.ggml.merges") or []]
    vocab = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind not in (UNUSED,)}
    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind == CONTROL,
        }
        for i, (t, kind) in enumerate(zip(tokens, types))
        if kind in (CONTROL, USER_DEFINED)
    ]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": style.normalizer,
        "pre_tokenizer": style.pre_tokenizer,
        "post_processor": None,
        "decoder": _DECODER,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": style.ignore_merges,
            "vocab": vocab,
            "merges": merges,
        },
    }
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, name in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id")):
        token_id = fields.get(f"tokenizer.ggml.{name}")
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            config[key] = tokens[int(token_id)]
    if isinstance(fields.get("tokenizer.ggml.add_bos_token"), bool):
        config["add_bos_token"] = fields["tokenizer.ggml.add_bos_token"]
    if isinstance(fields.get("tokenizer.chat_template"), str):
        config["chat_template"] = fields["tokenizer.chat_template"]
    return spec, config


def tokenizer_fields(
    vocab: BPEVocab, *, vocab_size: int, bos_id: int, eos_id: int, add_bos: bool, chat_template: str | None
) -> dict[str, Any]:
    """The `tokenizer.*` keys of a GGUF file for `vocab`, its token list padded to the model's `vocab_size` with
    unused `[PAD{i}]` tokens; a vocabulary llama.cpp would cut differently is a DataError."""
    style = PRE_TOKENIZERS[vocab.pre]
    if vocab.ignore_merges != style.ignore_merges:
        raise DataError(
            f"the tokenizer {'takes' if vocab.ignore_merges else 'does not take'} pieces found whole in its vocabulary "
            f"before merging (ignore_merges), but llama.cpp's {vocab.pre!r} cut "
            f"{'does' if style.ignore_merges else 'does not'}; the two would tokenize differently"
        )
    if len(vocab.tokens) > vocab_size:
        raise DataError(f"the tokenizer has {len(vocab.tokens):,} ids, more than the model's {vocab_size:,}")
    tokens, types = [], []
    for i in range(vocab_size):
        token = vocab.tokens[i] if i < len(vocab.tokens) else None
        tokens.append(token if token is not None else f"[PAD{i}]")
        kind = CONTROL if i in vocab.special else USER_DEFINED if i in vocab.user_defined else NORMAL
        types.append(UNUSED if token is None else kind)
    fields: dict[str, Any] = {
        "tokenizer.ggml.model": MODEL,
        "tokenizer.ggml.pre": vocab.pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": vocab.merges,
        "tokenizer.ggml.bos_token_id": bos_id,
        "tokenizer.ggml.eos_token_id": eos_id,
        "tokenizer.ggml.padding_token_id": eos_id,
        "tokenizer.ggml.add_bos_token": add_bos,
    }
    if chat_template:
        fields["tokenizer.chat_template"] = chat_template
    return fields
