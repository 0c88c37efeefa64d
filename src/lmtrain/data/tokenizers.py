"""Every tokenizer lmtrain reads: `--tokenizer gpt2` (the default), a Hugging Face `tokenizers` file, or a tiktoken
encoding from local files; and how a run carries its tokenizer so that checkpoints rebuild it anywhere.

`--tokenizer` takes `gpt2`, a `tokenizer.json` (or a folder holding one: what `lmtrain tokenizer train` writes and
what Hugging Face model folders hold), or a `NAME.tiktoken` file (r50k_base, p50k_base, cl100k_base, o200k_base; any
other NAME with a `NAME.json` beside it giving `pat_str` and `special_tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.tokenizer import (
    EOT_TEXT,
    GPT2_PATTERN,
    GPT2Tokenizer,
    Tokenizer,
    find_gpt2_folder,
    gpt2_fingerprint,
    load_tokenizer,
)
from lmtrain.errors import DataError

EOT_CANDIDATES = (EOT_TEXT, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")
"""End-of-document tokens looked for, in order, when tokenizer_config.json names no eos_token."""
CARRIED = "tokenizer"
"""Folder of a run and of each checkpoint holding the files of a tokenizer other than GPT-2's."""
DATA_EXTRA = "pip install 'lmtrain[data]'"

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
TIKTOKEN_ENCODINGS: Mapping[str, Mapping[str, Any]] = {
    "r50k_base": {"pat_str": GPT2_PATTERN, "special_tokens": {EOT_TEXT: 50256}},
    "p50k_base": {"pat_str": GPT2_PATTERN, "special_tokens": {EOT_TEXT: 50256}, "n_vocab": 50281},
    "cl100k_base": {
        "pat_str": CL100K_PATTERN,
        "special_tokens": {
            EOT_TEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "o200k_base": {"pat_str": O200K_PATTERN, "special_tokens": {EOT_TEXT: 199999, "<|endofprompt|>": 200018}},
}
"""The public tiktoken encodings: pattern and special tokens (as tiktoken_ext.openai_public defines them)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(tokenizer: Tokenizer, kind: str, **identity: object) -> dict[str, object]:
    """A file-based tokenizer's fingerprint: name, kind, size, end-of-document id, and what identifies its files."""
    return {
        "name": tokenizer.name,
        "kind": kind,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        **identity,
    }


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
        self.name = "hf"

    def __reduce__(self):
        return (HFTokenizer, (self.path,))

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.uint32) for e in encoded]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def describe(self) -> str:
        return f"{self.path} ({self.vocab_size:,} ids, end of document {self.eot_text} = {self.eot_id})"

    def fingerprint(self) -> dict[str, object]:
        return _fingerprint(self, "tokenizers", eot_text=self.eot_text, tokenizer_json_sha256=_sha256(self.path))

    def files(self) -> dict[str, Path]:
        found = {"tokenizer.json": self.path}
        config = self.path.parent / "tokenizer_config.json"
        if self.path.name == "tokenizer.json" and config.is_file():
            found["tokenizer_config.json"] = config
        return found


def _eot_text(path: Path, vocab: Mapping[str, int]) -> str:
    """The end-of-document token: tokenizer_config.json's eos_token, else the first of EOT_CANDIDATES present."""
    config = path.parent / "tokenizer_config.json"
    named: Any = None
    if path.name == "tokenizer.json" and config.is_file():
        try:
            named = json.loads(config.read_text()).get("eos_token")
        except ValueError:
            raise DataError(f"{config} is not valid JSON; fix or delete it") from None
        named = named.get("content") if isinstance(named, dict) else named
    for text in ([named] if named else []) + list(EOT_CANDIDATES):
        if text in vocab:
            return text
    raise DataError(
        f"{path} has no end-of-document token ({', '.join(EOT_CANDIDATES)}); add one as a special token "
        f"or name it as eos_token in tokenizer_config.json"
    )


class TiktokenFileTokenizer(Tokenizer):
    """A tiktoken encoding read from a local NAME.tiktoken file (base64 token, rank per line)."""

    def __init__(self, path: Path) -> None:
        import tiktoken

        self.path = path
        spec = dict(TIKTOKEN_ENCODINGS.get(path.stem, {}))
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            try:
                spec.update(json.loads(sidecar.read_text()))
            except ValueError:
                raise DataError(f"{sidecar} is not valid JSON") from None
        if "pat_str" not in spec or "special_tokens" not in spec:
            raise DataError(
                f"{path}: unknown tiktoken encoding {path.stem!r}; name the file after one of "
                f"{', '.join(TIKTOKEN_ENCODINGS)}, or write {sidecar.name} with pat_str and special_tokens"
            )
        specials: dict[str, int] = {str(k): int(v) for k, v in spec["special_tokens"].items()}
        if EOT_TEXT not in specials:
            raise DataError(f"{path}: its special_tokens lack {EOT_TEXT}, the end-of-document token")
        ranks = _read_tiktoken_ranks(path)
        self._enc = tiktoken.Encoding(
            name=path.stem, pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=specials
        )
        self.name = f"tiktoken:{path.stem}"
        self.eot_id = specials[EOT_TEXT]
        self.vocab_size = max(int(spec.get("n_vocab", 0)), self._enc.max_token_value + 1)
        self.pattern: str = spec["pat_str"]
        self.specials = specials

    def __reduce__(self):
        return (TiktokenFileTokenizer, (self.path,))

    def encode_array(self, text: str) -> np.ndarray:
        return self._enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def fingerprint(self) -> dict[str, object]:
        return _fingerprint(self, "tiktoken", tiktoken_sha256=_sha256(self.path))

    def files(self) -> dict[str, Path]:
        found = {self.path.name: self.path}
        if self.path.with_suffix(".json").is_file():
            found[self.path.with_suffix(".json").name] = self.path.with_suffix(".json")
        return found


def _read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise DataError(f"{path}:{number} is not a tiktoken line (base64 token, space, rank)") from None
    if not ranks:
        raise DataError(f"{path} holds no tokens")
    return ranks


def open_tokenizer(name: str, search: Sequence[Path]) -> Tokenizer:
    """The tokenizer `--tokenizer name` means: gpt2 (files from `search`, else tiktoken's), a tokenizer.json or a
    folder holding one (or GPT-2's encoder.json + vocab.bpe), or a NAME.tiktoken file."""
    if name == "gpt2":
        return load_tokenizer(search)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return HFTokenizer(path / "tokenizer.json")
        if find_gpt2_folder([path]) is not None:
            return load_tokenizer([path])
        found = sorted(path.glob("*.tiktoken"))
        if len(found) == 1:
            return TiktokenFileTokenizer(found[0])
        raise DataError(
            f"--tokenizer {path}: the folder holds no tokenizer.json, GPT-2 encoder.json + vocab.bpe or one "
            f"*.tiktoken file; train one with `lmtrain tokenizer train`"
        )
    if path.suffix == ".json" and path.is_file():
        return HFTokenizer(path)
    if path.suffix == ".tiktoken" and path.is_file():
        return TiktokenFileTokenizer(path)
    if not path.exists():
        raise DataError(f"--tokenizer {name}: no such file or folder; use gpt2, a tokenizer.json or a .tiktoken file")
    raise DataError(f"--tokenizer {name}: not a tokenizer.json, a .tiktoken file or a folder holding one")


def carry_tokenizer(tokenizer: Tokenizer, dest: Path) -> None:
    """Copy the tokenizer's files into `dest/tokenizer/` (nothing for GPT-2, which its fingerprint names)."""
    files = tokenizer.files()
    if not files:
        return
    (dest / CARRIED).mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        shutil.copyfile(path, dest / CARRIED / name)


def carried_tokenizer(folder: Path, fingerprint: Mapping[str, Any] | None, search: Sequence[Path]) -> Tokenizer:
    """The tokenizer a checkpoint or run folder was made with: GPT-2 (no fingerprint: lmtrain 0.1), or the files it
    carries in `folder/tokenizer/`, checked against the fingerprint."""
    if fingerprint is None or fingerprint == gpt2_fingerprint():
        return load_tokenizer(search)
    carried = folder / CARRIED
    if not carried.is_dir():
        raise DataError(
            f"{folder} was made with tokenizer {fingerprint.get('name')} but holds no {CARRIED}/ folder; copy "
            f"that tokenizer's files into {carried}"
        )
    tokenizer = open_tokenizer(str(carried), search)
    if tokenizer.fingerprint() != dict(fingerprint):
        raise DataError(f"{carried} is not the tokenizer {folder} was made with (its fingerprint differs)")
    return tokenizer


__all__ = [
    "GPT2Tokenizer",
    "HFTokenizer",
    "TiktokenFileTokenizer",
    "Tokenizer",
    "carried_tokenizer",
    "carry_tokenizer",
    "open_tokenizer",
]
