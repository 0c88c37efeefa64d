"""GPT-2's byte-level alphabet: the printable character that stands for each byte in byte-level BPE vocabularies
(GPT-2's encoder.json, a `tokenizers` ByteLevel tokenizer.json, a GGUF file's token list)."""

from __future__ import annotations

import functools


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Each byte -> its printable stand-in: printable Latin-1 bytes stand for themselves, the others for 256 + n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(chars.items()))


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """Each printable stand-in -> its byte (the inverse of `bytes_to_unicode`)."""
    return {c: b for b, c in bytes_to_unicode().items()}


def spell(token: bytes) -> str:
    """A token's bytes in the byte-level alphabet."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def unspell(text: str) -> bytes:
    """A byte-level token's bytes; a KeyError for a character outside the alphabet."""
    table = unicode_to_bytes()
    return bytes(table[c] for c in text)
