"""GPT-2's BPE, lmtrain's default tokenizer, through tiktoken: built from the release's encoder.json + vocab.bpe
(shipped in the package, checked by SHA-256) or tiktoken's own download."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmtrain.data.tokenizers.base import EOT_TEXT, BPEVocab, Tokenizer, write_json
from lmtrain.data.tokenizers.byte_level import unspell
from lmtrain.errors import DataError

GPT2_FILES = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
"""The GPT-2 release's BPE files and their SHA-256 (the hashes tiktoken checks too)."""

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
"""GPT-2's pre-tokenisation regex as tiktoken writes it for the `gpt2` encoding."""

EOT_ID = 50256
"""GPT-2's end-of-text id."""
GPT2_VOCAB_SIZE = 50257


@dataclass(frozen=True)
class TokenizerSource:
    """Where the GPT-2 BPE comes from: a folder holding encoder.json + vocab.bpe, or tiktoken (None)."""

    folder: str | None

    def describe(self) -> str:
        """Human description for logs."""
        return self.folder if self.folder else "tiktoken's gpt2 download"


def _read_verified(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    want = GPT2_FILES[path.name]
    if digest != want:
        raise DataError(
            f"{path} is not the GPT-2 release file (sha256 {digest[:12]}…, expected {want[:12]}…); "
            f"replace it with the original from the GPT-2 release"
        )
    return data


def _ranks_from_files(folder: Path) -> dict[bytes, int]:
    """Mergeable ranks {token bytes: id} from encoder.json, checked against vocab.bpe's merge order."""
    encoder = json.loads(_read_verified(folder / "encoder.json"))
    merges = _read_verified(folder / "vocab.bpe").decode("utf-8").split("\n")[1:]
    ranks = {unspell(tok): i for tok, i in encoder.items() if tok != EOT_TEXT}
    for i, line in enumerate(m for m in merges if m):
        first, second = line.split()
        if ranks[unspell(first + second)] != 256 + i:
            raise DataError(f"{folder}: vocab.bpe and encoder.json disagree at merge {i}")
    return ranks


@functools.lru_cache(maxsize=4)
def _encoding(source: TokenizerSource):  # -> tiktoken.Encoding
    import tiktoken

    if source.folder is None:
        try:
            return tiktoken.get_encoding("gpt2")
        except Exception as exc:  # network or cache failure inside tiktoken
            raise DataError(f"tiktoken's download of the GPT-2 BPE failed ({type(exc).__name__})") from None
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=_ranks_from_files(Path(source.folder)),
        special_tokens={EOT_TEXT: EOT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


def gpt2_fingerprint() -> dict[str, object]:
    """What identifies the GPT-2 BPE in prepared data and checkpoints (the same from files or tiktoken)."""
    return {
        "name": "gpt2",
        "vocab_size": GPT2_VOCAB_SIZE,
        "eot_id": EOT_ID,
        "encoder_json_sha256": GPT2_FILES["encoder.json"],
        "vocab_bpe_sha256": GPT2_FILES["vocab.bpe"],
    }


class GPT2Tokenizer(Tokenizer):
    """GPT-2 BPE (tiktoken): the default tokenizer; needs no files in a run, its fingerprint names it."""

    name = "gpt2"
    eot_id = EOT_ID
    vocab_size = GPT2_VOCAB_SIZE

    def __init__(self, source: TokenizerSource) -> None:
        self.source = source
        self._enc = _encoding(source)

    def __reduce__(self):  # rebuilt from its source in worker processes
        return (GPT2Tokenizer, (self.source,))

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_array(self, text: str) -> np.ndarray:
        return self._enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.uint32) for ids in self._enc.encode_ordinary_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def encode_rendered(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special="all")

    def fingerprint(self) -> dict[str, object]:
        return gpt2_fingerprint()

    def describe(self) -> str:
        return f"GPT-2 BPE from {self.source.describe()}"

    def _folder(self) -> Path:
        """The folder holding encoder.json + vocab.bpe (tiktoken's download has neither)."""
        if self.source.folder is None:
            raise DataError(
                "GPT-2 BPE read from tiktoken's download has no encoder.json + vocab.bpe to write; put the two files "
                "of the GPT-2 release in --data-dir/gpt2"
            )
        return Path(self.source.folder)

    def save_hf(self, out: Path, max_len: int) -> list[str]:
        """vocab.json + merges.txt (GPT2Tokenizer) and the tokenizer configs."""
        folder = self._folder()
        shutil.copyfile(folder / "encoder.json", out / "vocab.json")
        shutil.copyfile(folder / "vocab.bpe", out / "merges.txt")
        special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
        config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": max_len, "add_prefix_space": False}
        write_json(out / "tokenizer_config.json", config | special)
        write_json(out / "special_tokens_map.json", special)
        return ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]

    def bpe_vocab(self) -> BPEVocab:
        """The release's encoder.json (id order) and vocab.bpe, cut as GPT-2 cuts."""
        folder = self._folder()
        encoder = json.loads(_read_verified(folder / "encoder.json"))
        tokens = sorted(encoder, key=encoder.__getitem__)
        merges = [m for m in _read_verified(folder / "vocab.bpe").decode("utf-8").split("\n")[1:] if m]
        return BPEVocab(tokens=tokens, special=frozenset({EOT_ID}), merges=merges, pre="gpt-2")


def find_gpt2_folder(search: Sequence[Path]) -> Path | None:
    """The first folder in `search` that holds both encoder.json and vocab.bpe."""
    for folder in search:
        if all((folder / name).is_file() for name in GPT2_FILES):
            return folder
    return None


def load_gpt2(search: Sequence[Path]) -> GPT2Tokenizer:
    """GPT-2 BPE from the first folder in `search` holding its files, else tiktoken's download."""
    folder = find_gpt2_folder(search)
    if folder is not None:
        return GPT2Tokenizer(TokenizerSource(str(folder.resolve())))
    try:
        return GPT2Tokenizer(TokenizerSource(None))
    except DataError as exc:
        where = ", ".join(str(p) for p in search)
        raise DataError(
            f"GPT-2 BPE files (encoder.json, vocab.bpe) are not in {where}, and {exc}; "
            f"copy the two files into one of those folders"
        ) from None
