"""How a run carries its tokenizer: its files copied into the run folder and each checkpoint (`tokenizer/`), and the
tokenizer rebuilt from them anywhere, checked against the fingerprint the run recorded (GPT-2's needs no files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmtrain.data.tokenizers import open_tokenizer
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gpt2 import gpt2_fingerprint, load_gpt2
from lmtrain.errors import DataError

CARRIED = "tokenizer"
"""Folder of a run and of each checkpoint holding the files of a tokenizer other than GPT-2's."""


def carry_tokenizer(tokenizer: Tokenizer, dest: Path) -> None:
    """Write the tokenizer's files into `dest/tokenizer/` (nothing for GPT-2, which its fingerprint names)."""
    tokenizer.save(dest / CARRIED)


def carried_tokenizer(folder: Path, fingerprint: Mapping[str, Any] | None, search: Sequence[Path]) -> Tokenizer:
    """The tokenizer a checkpoint or run folder was made with: GPT-2 (no fingerprint: lmtrain 0.1), or the files it
    carries in `folder/tokenizer/`, checked against the fingerprint."""
    if fingerprint is None or fingerprint == gpt2_fingerprint():
        return load_gpt2(search)
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
