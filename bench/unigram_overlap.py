"""How much a source corpus's tokens say about a target corpus, before any model: with GPT-2 BPE, the share of the
target's validation tokens that never occur in the source, and the cross-entropy of the target's validation split under
the source's unigram distribution (add-k smoothed, the best k of 0.01, 0.1 and 1) against the same under the target's
own training split (its first 3 MB) and ln V. A model trained on the source alone starts on the target near the first
figure at best. bench/finetune.sh records it in finetune-e2e-cpu-2core.json.

Usage: python bench/unigram_overlap.py SOURCE_FILE TARGET_DIR   (TARGET_DIR holds train.txt and valid.txt)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from lmtrain.data.datasets import ASSETS
from lmtrain.data.tokenizers import open_tokenizer


def _ids(tokenizer, path: Path, limit: int | None = None) -> np.ndarray:
    return np.asarray(tokenizer.encode(path.read_text(encoding="utf-8")[:limit]), dtype=np.int64)


def _cross_entropy(train: np.ndarray, valid: np.ndarray, vocab: int) -> float:
    best = math.inf
    for k in (0.01, 0.1, 1.0):
        counts = np.bincount(train, minlength=vocab) + k
        best = min(best, float(-np.log(counts[valid] / counts.sum()).mean()))
    return best


def main(source: Path, target: Path) -> None:
    tokenizer = open_tokenizer("gpt2", [ASSETS / "gpt2"])
    vocab = tokenizer.vocab_size
    src = _ids(tokenizer, source)
    valid = _ids(tokenizer, target / "valid.txt")
    own = _ids(tokenizer, target / "train.txt", 3_000_000)
    seen = np.bincount(src, minlength=vocab) > 0
    row = {
        "source": source.name,
        "source_tokens": int(src.size),
        "target_valid_tokens": int(valid.size),
        "target_valid_unseen_in_source": round(1 - float(seen[valid].mean()), 4),
        "unigram_of_source_on_target": round(_cross_entropy(src, valid, vocab), 3),
        "unigram_of_target_train_on_target": round(_cross_entropy(own, valid, vocab), 3),
        "ln_v": round(math.log(vocab), 3),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
