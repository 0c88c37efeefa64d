"""Byte-level BPE tokenizers in the three pre-tokenizer styles lmtrain's tiktoken path takes (GPT-2's ByteLevel regex;
Llama-3's and Qwen2's Split regex + ByteLevel, Qwen2's after NFC), trained with `tokenizers` on a text; and the same
tokenizer with a non-special added token that keeps it on the `tokenizers` path. Used by tests/test_bpe_ranks.py and
bench/tokenizer_prepare.py."""

from __future__ import annotations

import json
from pathlib import Path

from lmtrain.data.tokenizers.pretokenizers import LLAMA3_PATTERN, QWEN2_PATTERN

STYLES = ("gpt2", "llama3", "qwen2")


def train_style(style: str, texts: list[str], out: Path, vocab_size: int = 4000) -> Path:
    """A tokenizer.json of `style` trained on `texts` into folder `out` (with a tokenizer_config.json naming its
    end-of-text token); the folder."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=style != "gpt2"))
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3_PATTERN if style == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if style == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>" if style != "llama3" else "<|end_of_text|>"
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eot, "<|im_start|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": eot, "bos_token": eot}))
    return out


def slow_copy(folder: Path, out: Path) -> Path:
    """The tokenizer of `folder` with one non-special added token that never occurs: the same ids, the `tokenizers`
    path (tiktoken cannot express a non-special added token)."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    new_id = max(t["id"] for t in spec["added_tokens"]) + len(spec["model"]["vocab"])
    spec["added_tokens"].append(
        {
            "id": new_id,
            "content": "<never-in-any-text>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(spec))
    (out / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text())
    return out
