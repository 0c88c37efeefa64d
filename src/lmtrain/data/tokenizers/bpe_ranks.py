"""A byte-level BPE tokenizer.json expressed as tiktoken ranks, where that is exact: the fast path of prepare.

tiktoken merges the adjacent pair whose concatenation has the lowest rank; a `tokenizers` BPE merges the pair listed
first. Where every merged token's id grows with its merge's place in the list (as GPT-2's, Llama-3's, Qwen2's and every
BPE `lmtrain tokenizer train` writes have it), the id is the rank and both split a piece alike. The pieces must be cut
alike too: GPT-2's ByteLevel pre-tokenizer (its regex, no prefix space) or a Split on one regex (isolated) followed by
ByteLevel without its regex (Llama-3, Qwen2), after no normalizer or NFC. Anything else (added tokens that are not
special, a byte fallback, dropout, other pre-tokenizers) keeps the `tokenizers` path. The ids are tested equal on the
sample and on the Linux documentation.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lmtrain.data.tokenizers.byte_level import unicode_to_bytes
from lmtrain.data.tokenizers.gpt2 import GPT2_PATTERN


@dataclass(frozen=True)
class TiktokenForm:
    """What tiktoken needs to encode exactly as the tokenizer.json does."""

    pattern: str
    ranks: dict[bytes, int]
    specials: dict[str, int]
    normalize: Callable[[str], str] | None
    """Applied to the text first (NFC), or None."""


def _pattern(pre: Mapping[str, Any] | None) -> str | None:
    """The regex cutting text into pieces, where the pre-tokenizer is one tiktoken can follow."""
    if pre is None:
        return None
    if pre.get("type") == "ByteLevel":
        ok = pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
        return GPT2_PATTERN if ok else None
    if pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return None
    split, level = pre["pretokenizers"]
    regex = (split.get("pattern") or {}).get("Regex")
    exact_split = split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
    exact_level = level.get("type") == "ByteLevel" and not level.get("use_regex", True)
    exact_level = exact_level and not level.get("add_prefix_space", False)
    return regex if regex and exact_split and exact_level else None


def tiktoken_form(spec: Mapping[str, Any]) -> TiktokenForm | None:
    """The tiktoken form of a parsed tokenizer.json, or None where it would not give the same ids."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback"):
        return None
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return None
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return None
    pattern = _pattern(spec.get("pre_tokenizer"))
    if pattern is None:
        return None
    added = spec.get("added_tokens") or []
    if any(not token.get("special") for token in added):
        return None
    to_byte = unicode_to_bytes()
    vocab: dict[str, int] = model["vocab"]
    specials = {token["content"]: int(token["id"]) for token in added}
    ranks: dict[bytes, int] = {}
    for text, rank in vocab.items():
        if text in specials:
            continue
        try:
            ranks[bytes(to_byte[c] for c in text)] = rank
        except KeyError:
            return None  # not a byte-level vocabulary
    if any(bytes([b]) not in ranks for b in range(256)):
        return None
    last = -1
    for merge in model.get("merges", []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = vocab.get(left + right)
        if rank is None or rank <= last:
            return None  # merge order and id order differ: tiktoken would merge differently
        last = rank
    if len(ranks) != 256 + len(model.get("merges", [])) or len(set(ranks.values())) != len(ranks):
        return None  # tokens no merge makes: tiktoken could reach them, the BPE could not
    return TiktokenForm(
        pattern=pattern,
        ranks=ranks,
        specials=specials,
        normalize=(lambda text: unicodedata.normalize("NFC", text)) if normalizer else None,
    )
