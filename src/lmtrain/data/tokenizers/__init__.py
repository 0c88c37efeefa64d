"""Every tokenizer lmtrain reads, one module per kind, and `open_tokenizer`, what `--tokenizer` means.

`--tokenizer` takes `gpt2` (the default: `gpt2.py`), a `tokenizer.json` or a folder holding one (`tokenizer_json.py`:
what `lmtrain tokenizer train` writes, `training.py`, and what Hugging Face model folders hold), a `NAME.tiktoken`
file (`tiktoken_file.py`) or a GGUF file, whose vocabulary it uses (`gguf_vocab.py`). `carry.py` copies a run's tokenizer into its checkpoints and rebuilds it from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gguf_vocab import GGUFTokenizer
from lmtrain.data.tokenizers.gpt2 import find_gpt2_folder, load_gpt2
from lmtrain.data.tokenizers.tiktoken_file import TiktokenFileTokenizer
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.errors import DataError
from lmtrain.gguf_file import is_gguf

BUILTIN = ("gpt2",)
"""--tokenizer values that name a tokenizer rather than a path."""


def open_tokenizer(name: str, search: Sequence[Path]) -> Tokenizer:
    """The tokenizer `--tokenizer name` means: gpt2 (files from `search`, else tiktoken's), a tokenizer.json or a
    folder holding one (or GPT-2's encoder.json + vocab.bpe), a NAME.tiktoken file, or a GGUF file (by its magic
    bytes)."""
    if name in BUILTIN:
        return load_gpt2(search)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return HFTokenizer(path / "tokenizer.json")
        if find_gpt2_folder([path]) is not None:
            return load_gpt2([path])
        found = sorted(path.glob("*.tiktoken"))
        if len(found) == 1:
            return TiktokenFileTokenizer(found[0])
        raise DataError(
            f"--tokenizer {path}: the folder holds no tokenizer.json, GPT-2 encoder.json + vocab.bpe or one "
            f"*.tiktoken file; train one with `lmtrain tokenizer train`"
        )
    if is_gguf(path):
        return GGUFTokenizer(path)
    if path.suffix == ".json" and path.is_file():
        return HFTokenizer(path)
    if path.suffix == ".tiktoken" and path.is_file():
        return TiktokenFileTokenizer(path)
    if not path.exists():
        raise DataError(
            f"--tokenizer {name}: no such file or folder; use gpt2, a tokenizer.json, a .tiktoken file or a GGUF file"
        )
    raise DataError(f"--tokenizer {name}: not a tokenizer.json, a .tiktoken file, a GGUF file or a folder holding one")
