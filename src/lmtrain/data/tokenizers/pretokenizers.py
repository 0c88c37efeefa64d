"""The ways a byte-level BPE cuts text into pieces before merging, by the name llama.cpp gives each
(`tokenizer.ggml.pre` in a GGUF file, `src/llama-vocab.cpp`), with the `tokenizers` pre-tokenizer and normalizer that
cut alike (what a tokenizer.json holds).

GGUF export names a tokenizer's cut (`style_of` a tokenizer.json); GGUF import rebuilds the tokenizer.json from the name
(`named`). A cut with no entry here is refused both ways: llama.cpp refuses a pre-tokenizer name it does not know when
it loads a file, and guessing one would tokenize differently from the model's training without a word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lmtrain.errors import DataError

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
"""Llama-3's split (its tokenizer.json's Split regex)."""
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's split: Llama-3's with single digits."""

_BYTE_LEVEL_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTE_LEVEL_BARE = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def _split_then_bytes(pattern: str) -> dict[str, Any]:
    return {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            _BYTE_LEVEL_BARE,
        ],
    }


@dataclass(frozen=True)
class PreTokenizer:
    """One cut: llama.cpp's name for it, and the tokenizer.json parts that cut alike."""

    name: str
    """llama.cpp's name (`tokenizer.ggml.pre`), the one GGUF export writes."""
    pre_tokenizer: Mapping[str, Any]
    """tokenizer.json's `pre_tokenizer`."""
    normalizer: Mapping[str, Any] | None = None
    """tokenizer.json's `normalizer` (None: none)."""
    aliases: tuple[str, ...] = field(default=())
    """Other names llama.cpp gives the same cut (read on import)."""
    ignore_merges: bool = False
    """Whether llama.cpp takes a piece found whole in the vocabulary before merging, for this name (Llama-3's)."""


PRE_TOKENIZERS: Mapping[str, PreTokenizer] = MappingProxyType(
    {
        "gpt-2": PreTokenizer("gpt-2", _BYTE_LEVEL_REGEX),
        "llama-bpe": PreTokenizer(
            "llama-bpe", _split_then_bytes(LLAMA3_PATTERN), aliases=("llama3", "llama-v3"), ignore_merges=True
        ),
        "qwen2": PreTokenizer("qwen2", _split_then_bytes(QWEN2_PATTERN), {"type": "NFC"}),
        "smollm": PreTokenizer(
            "smollm",
            {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL_REGEX]},
        ),
    }
)
"""GPT-2's (and every BPE `lmtrain tokenizer train` writes), Llama-3's, Qwen2's and SmolLM's cuts."""


def named(name: str) -> PreTokenizer:
    """The cut llama.cpp calls `name`; one lmtrain does not rebuild is a DataError naming the known ones."""
    for style in PRE_TOKENIZERS.values():
        if name == style.name or name in style.aliases:
            return style
    raise DataError(
        f"unknown pre-tokenizer {name!r}; lmtrain rebuilds the byte-level BPE cuts llama.cpp calls "
        f"{', '.join(PRE_TOKENIZERS)}"
    )


def _canonical(part: Any) -> Any:
    """A pre-tokenizer or normalizer with what does not change the cut left out and tokenizers' defaults filled in."""
    if isinstance(part, list):
        return [_canonical(p) for p in part]
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind == "ByteLevel":
        return {
            "type": kind,
            "add_prefix_space": bool(part.get("add_prefix_space", True)),
            "use_regex": bool(part.get("use_regex", True)),
        }
    if kind == "Sequence":
        inner = part.get("pretokenizers", part.get("normalizers", []))
        return {"type": kind, "parts": _canonical(inner)}
    return {k: _canonical(v) for k, v in part.items()}


def style_of(spec: Mapping[str, Any]) -> PreTokenizer | None:
    """The cut of a parsed tokenizer.json (its pre-tokenizer and normalizer), or None when no named cut is it."""
    pre, norm = _canonical(spec.get("pre_tokenizer")), _canonical(spec.get("normalizer"))
    for style in PRE_TOKENIZERS.values():
        if pre == _canonical(style.pre_tokenizer) and norm == _canonical(style.normalizer):
            return style
    return None
