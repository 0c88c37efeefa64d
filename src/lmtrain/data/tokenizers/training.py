"""`lmtrain tokenizer train`: a byte-level BPE trained on the train documents of a corpus with HF `tokenizers`.

The tokenizer splits text with GPT-2's pre-tokenization regex, maps bytes as GPT-2 does (so every text encodes), and
has one special token, `<|endoftext|>`, the end of a document. The folder it writes (tokenizer.json,
tokenizer_config.json, and lmtrain_tokenizer.json describing how it was made) is what `--tokenizer DIR` reads and what
`AutoTokenizer.from_pretrained(DIR)` loads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lmtrain import __version__
from lmtrain.data.corpus import Source
from lmtrain.data.prepare import BLOCK_BYTES, assignment, default_workers
from lmtrain.data.tokenizers.base import EOT_TEXT
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.data.units import doc_split, plan_units, splitter, unit_documents
from lmtrain.errors import DATA_EXTRA, ConfigError, DataError
from lmtrain.files import atomic_dir, require_new_folder

MIN_VOCAB = 512
MAX_VOCAB = 1 << 20
BATCH = 1000
"""Documents per batch handed to the trainer."""


def train_texts(source: Source, text_field: str, block_bytes: int = BLOCK_BYTES) -> Iterator[str]:
    """The texts of the source's train documents (a pool's held-out documents left out, chosen as prepare chooses
    them)."""
    assign = assignment(source, text_field=text_field, block_bytes=block_bytes, workers=default_workers())
    split_of = splitter(assign)
    units = plan_units(source.files, kind=source.kind, text_field=text_field, block_bytes=block_bytes, lead_of=split_of)
    for unit in units:
        for doc in unit_documents(unit, source.kind, text_field):
            if doc.raw and doc_split(doc, unit, split_of) == "train":
                yield doc.text


def train_tokenizer(
    texts: Iterator[str],
    *,
    vocab_size: int,
    out: Path,
    about: dict[str, Any],
    min_frequency: int = 2,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> HFTokenizer:
    """Train a byte-level BPE of `vocab_size` ids (id 0 is `<|endoftext|>`) on `texts` and write it to `out` (new or
    empty) atomically; `about` is recorded beside it."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ConfigError(f"--vocab-size {vocab_size} must be between {MIN_VOCAB} and {MAX_VOCAB:,}")
    require_new_folder(out)
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ModuleNotFoundError:
        raise DataError(f"lmtrain tokenizer train needs the `tokenizers` package: {DATA_EXTRA}") from None
    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    counted = {"documents": 0, "bytes": 0}

    def batches() -> Iterator[list[str]]:
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            counted["documents"] += 1
            counted["bytes"] += len(text.encode("utf-8"))
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    tok.train_from_iterator(batches(), trainer=trainer)
    if counted["documents"] == 0:
        raise DataError("the corpus has no train documents to learn a tokenizer from")
    seconds = time.perf_counter() - t0
    with atomic_dir(out) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT_TEXT, "eos_token": EOT_TEXT}
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        made = {
            "lmtrain_version": __version__,
            "kind": "byte-level BPE (GPT-2 pre-tokenization), tokenizers",
            "vocab_size": tok.get_vocab_size(),
            "requested_vocab_size": vocab_size,
            "min_frequency": min_frequency,
            **counted,
            "seconds": round(seconds, 2),
            **about,
        }
        (tmp / "lmtrain_tokenizer.json").write_text(json.dumps(made, indent=2) + "\n")
    log(f"trained a {tok.get_vocab_size():,}-id BPE on {counted['documents']:,} documents in {seconds:.1f} s")
    return HFTokenizer(out / "tokenizer.json")
