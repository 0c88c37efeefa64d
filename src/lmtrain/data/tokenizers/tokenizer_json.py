"""A Hugging Face `tokenizers` tokenizer read from its tokenizer.json (what `lmtrain tokenizer train` writes and what
Hugging Face model folders hold), with the end-of-document token its tokenizer_config.json names."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.tokenizers.base import EOT_TEXT, Tokenizer, file_fingerprint, sha256_file
from lmtrain.errors import DATA_EXTRA, DataError

EOT_CANDIDATES = (EOT_TEXT, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")
"""End-of-document tokens looked for, in order, when tokenizer_config.json names no eos_token."""


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` tokenizer from its tokenizer.json (and tokenizer_config.json beside it, if any)."""

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer as Backend
        except ModuleNotFoundError:
            raise DataError(f"--tokenizer {path} needs the `tokenizers` package; {DATA_EXTRA}") from None
        self.path = path
        try:
            self._tok = Backend.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise DataError(f"{path} is not a tokenizers tokenizer.json ({str(exc)[:120]})") from None
        self._tok.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, never the id
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1
        self.eot_text = _eot_text(path, vocab)
        self.eot_id = vocab[self.eot_text]
        bos = _config_token(path, "bos_token")
        self._bos_id = vocab[bos] if bos in vocab else self.eot_id
        self.name = "hf"
        self._fast = _tiktoken_path(path)

    @property
    def fast(self) -> bool:
        """Whether text is encoded through tiktoken (a byte-level BPE it expresses exactly: `bpe_ranks.py`)."""
        return self._fast is not None

    @property
    def bos_id(self) -> int:
        """tokenizer_config.json's bos_token where it names one in the vocabulary, else the end-of-document token."""
        return self._bos_id

    def __reduce__(self):
        return (HFTokenizer, (self.path,))

    def encode_array(self, text: str) -> np.ndarray:
        if self._fast is not None:
            encoding, normalize = self._fast
            text = normalize(text) if normalize else text
            return encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=()).astype(np.uint32)
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self._fast is not None:
            encoding, normalize = self._fast
            texts = [normalize(t) for t in texts] if normalize else list(texts)
            batch = encoding.encode_ordinary_batch(texts)
            return [np.asarray(ids, dtype=np.uint32) for ids in batch]
        encoded = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.uint32) for e in encoded]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def describe(self) -> str:
        return f"{self.path} ({self.vocab_size:,} ids, end of document {self.eot_text} = {self.eot_id})"

    def fingerprint(self) -> dict[str, object]:
        return file_fingerprint(
            self, "tokenizers", eot_text=self.eot_text, tokenizer_json_sha256=sha256_file(self.path)
        )

    def files(self) -> dict[str, Path]:
        found = {"tokenizer.json": self.path}
        config = self.path.parent / "tokenizer_config.json"
        if self.path.name == "tokenizer.json" and config.is_file():
            found["tokenizer_config.json"] = config
        return found


def _tiktoken_path(path: Path) -> tuple[Any, Any] | None:
    """(tiktoken Encoding, normalizer) of a tokenizer.json tiktoken expresses exactly, else None (the `tokenizers`
    path)."""
    import tiktoken

    from lmtrain.data.tokenizers.bpe_ranks import tiktoken_form

    try:
        form = tiktoken_form(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if form is None:
        return None
    try:
        encoding = tiktoken.Encoding(
            name=f"hf-{path.parent.name}",
            pat_str=form.pattern,
            mergeable_ranks=form.ranks,
            special_tokens=form.specials,
        )
    except ValueError:  # a regex tiktoken's engine does not take
        return None
    return encoding, form.normalize


def _config_token(path: Path, key: str) -> str | None:
    """The token tokenizer_config.json beside tokenizer.json names under `key` (eos_token, bos_token), if any."""
    config = path.parent / "tokenizer_config.json"
    named: Any = None
    if path.name == "tokenizer.json" and config.is_file():
        try:
            named = json.loads(config.read_text()).get(key)
        except ValueError:
            raise DataError(f"{config} is not valid JSON; fix or delete it") from None
        named = named.get("content") if isinstance(named, dict) else named
    return named if isinstance(named, str) else None


def _eot_text(path: Path, vocab: Mapping[str, int]) -> str:
    """The end-of-document token: tokenizer_config.json's eos_token, else the first of EOT_CANDIDATES present."""
    named = _config_token(path, "eos_token")
    for text in ([named] if named else []) + list(EOT_CANDIDATES):
        if text in vocab:
            return text
    raise DataError(
        f"{path} has no end-of-document token ({', '.join(EOT_CANDIDATES)}); add one as a special token "
        f"or name it as eos_token in tokenizer_config.json"
    )
