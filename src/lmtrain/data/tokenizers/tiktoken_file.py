"""A tiktoken encoding read from a local NAME.tiktoken file: r50k_base, p50k_base, cl100k_base, o200k_base by name,
any other NAME with a NAME.json beside it giving `pat_str` and `special_tokens`."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.tokenizers.base import EOT_TEXT, Tokenizer, file_fingerprint, write_json
from lmtrain.data.tokenizers.gpt2 import GPT2_PATTERN
from lmtrain.errors import DataError
from lmtrain.files import sha256_file

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

    def encode_rendered(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special="all")

    def fingerprint(self) -> dict[str, object]:
        return file_fingerprint(self, "tiktoken", tiktoken_sha256=sha256_file(self.path))

    def save(self, folder: Path) -> list[str]:
        """The .tiktoken file, and its NAME.json where it has one."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for path in (self.path, self.path.with_suffix(".json")):
            if path.is_file():
                shutil.copyfile(path, folder / path.name)
                written.append(path.name)
        return written

    def save_hf(self, folder: Path, max_len: int) -> list[str]:
        """A tokenizer.json converted by transformers' TikTokenConverter, and the tokenizer configs."""
        from transformers.convert_slow_tokenizer import TikTokenConverter

        specials = sorted(self.specials, key=self.specials.__getitem__)
        converted = TikTokenConverter(
            vocab_file=str(self.path), pattern=self.pattern, extra_special_tokens=specials
        ).converted()
        converted.save(str(folder / "tokenizer.json"))
        special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len}
        write_json(folder / "tokenizer_config.json", config | special)
        write_json(folder / "special_tokens_map.json", special)
        return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


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
