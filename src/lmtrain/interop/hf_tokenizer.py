"""A run's tokenizer written into an exported Hugging Face folder, in a form `AutoTokenizer` loads.

GPT-2 BPE: vocab.json + merges.txt (GPT2Tokenizer). A `tokenizers` tokenizer: its tokenizer.json
(PreTrainedTokenizerFast). A tiktoken encoding: converted to a tokenizer.json with transformers' TikTokenConverter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lmtrain.data.tokenizers.base import EOT_TEXT, Tokenizer
from lmtrain.data.tokenizers.gpt2 import GPT2Tokenizer
from lmtrain.data.tokenizers.tiktoken_file import TiktokenFileTokenizer
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_hf_tokenizer(tokenizer: Tokenizer, out: Path, max_len: int) -> list[str]:
    """Write the tokenizer's files into `out`; the names written (none for GPT-2 BPE read from tiktoken's download,
    which has no files to copy)."""
    if isinstance(tokenizer, GPT2Tokenizer):
        if tokenizer.source.folder is None:
            return []
        folder = Path(tokenizer.source.folder)
        shutil.copyfile(folder / "encoder.json", out / "vocab.json")
        shutil.copyfile(folder / "vocab.bpe", out / "merges.txt")
        special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
        _write_json(
            out / "tokenizer_config.json",
            {"tokenizer_class": "GPT2Tokenizer", "model_max_length": max_len, "add_prefix_space": False, **special},
        )
        _write_json(out / "special_tokens_map.json", special)
        return ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
    if isinstance(tokenizer, HFTokenizer):
        shutil.copyfile(tokenizer.path, out / "tokenizer.json")
        eot = tokenizer.eot_text
    elif isinstance(tokenizer, TiktokenFileTokenizer):
        from transformers.convert_slow_tokenizer import TikTokenConverter

        specials = sorted(tokenizer.specials, key=tokenizer.specials.__getitem__)
        converted = TikTokenConverter(
            vocab_file=str(tokenizer.path), pattern=tokenizer.pattern, extra_special_tokens=specials
        ).converted()
        converted.save(str(out / "tokenizer.json"))
        eot = EOT_TEXT
    else:
        return []
    special = {"bos_token": eot, "eos_token": eot}
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len, **special},
    )
    _write_json(out / "special_tokens_map.json", special)
    return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
