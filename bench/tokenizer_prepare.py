"""Prepare speed with an imported or trained tokenizer.json against GPT-2's BPE through tiktoken, on this machine, as
recorded in bench/results/tokenizer-prepare-cpu-2core.json: the Linux documentation's training split (23 MB) prepared
with every core by GPT-2 BPE (tiktoken), by byte-level BPEs of GPT-2's, Llama-3's and Qwen2's pre-tokenizer styles
trained on the built-in sample (`lmtrain.bench.tokenizer_styles`) through the tiktoken path, and by the GPT-2-style one
kept on the `tokenizers` path (the speed before the tiktoken path); each tiktoken-path tokenizer's ids checked equal
to `tokenizers`' on the sample and on the Linux documentation's validation split.

Usage: python bench/tokenizer_prepare.py [--docs FOLDER] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from lmtrain.bench import provenance
from lmtrain.bench.tokenizer_styles import STYLES, slow_copy, train_style
from lmtrain.data.datasets import get_dataset
from lmtrain.data.prepare import PrepareOptions, prepare_file
from lmtrain.data.tokenizers.gpt2 import load_gpt2
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer

ASSETS = Path(__file__).resolve().parents[1] / "src" / "lmtrain" / "assets"
SAMPLE, GPT2_FILES = ASSETS / "sample", ASSETS / "gpt2"


def _same_ids(tok: HFTokenizer, texts: list[str]) -> bool:
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(tok.path))
    reference.encode_special_tokens = True
    theirs = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    return [a.tolist() for a in tok.encode_batch(texts)] == theirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=Path, default=Path("../shared/data/linux-docs"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tokenizer-prepare-cpu-2core.json"))
    args = parser.parse_args()
    spec = get_dataset("text")
    source = args.docs / "train.txt"
    megabytes = source.stat().st_size / 1e6
    checks = {
        "sample valid": (SAMPLE / "wiki.valid.raw").read_text().split("\n \n"),
        "linux-docs valid": (args.docs / "valid.txt").read_text().split("\n\n"),
    }
    workers = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmtrain-tok-") as tmp:
        train_texts = (SAMPLE / "wiki.train.raw").read_text().split("\n \n")
        folders = {s: train_style(s, train_texts, Path(tmp) / s, vocab_size=16000) for s in STYLES}
        tokenizers = {"gpt2 BPE (tiktoken)": load_gpt2([GPT2_FILES])}
        for style, folder in folders.items():
            tokenizers[f"{style}-style tokenizer.json"] = HFTokenizer(folder / "tokenizer.json")
        slow = slow_copy(folders["gpt2"], Path(tmp) / "slow")
        tokenizers["gpt2-style tokenizer.json, tokenizers path"] = HFTokenizer(slow / "tokenizer.json")
        for name, tok in tokenizers.items():
            options = PrepareOptions(workers=workers, force=True, log=lambda _m: None)
            result = prepare_file(spec, "train", source, tok, Path(tmp) / f"cache-{len(rows)}", options=options)
            row = {
                "tokenizer": name,
                "seconds": round(result.seconds, 2),
                "mb_per_s": round(megabytes / result.seconds, 2),
                "tokens": result.splits["train"].num_tokens,
            }
            if isinstance(tok, HFTokenizer):
                row["tiktoken_path"] = tok.fast
                row["ids_equal_tokenizers"] = {k: _same_ids(tok, v) for k, v in checks.items()}
            rows.append(row)
            print(json.dumps(row))
    gpt2 = rows[0]["mb_per_s"]
    for row in rows:
        row["share_of_gpt2_bpe"] = round(row["mb_per_s"] / gpt2, 3)
    out = {
        "corpus": str(source),
        "megabytes": round(megabytes, 1),
        "workers": workers,
        "rows": rows,
        "provenance": provenance() | {"command": "python bench/tokenizer_prepare.py"},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
