"""Prepare throughput: one worker against all cores on the same text; or lmtrain against Hugging Face `datasets` +
`tokenizers` (the `run_clm.py` recipe: load_dataset, then map with batched=True and num_proc = cores) on a corpus,
in one run."""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.corpus import Corpus, Source
from lmtrain.data.datasets import DataPaths, DatasetSpec
from lmtrain.data.prepare import PrepareOptions, prepare_corpus, prepare_file
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gpt2 import GPT2Tokenizer
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.errors import DATA_EXTRA, ConfigError, DataError


def build_corpus(source: Path, megabytes: float, dest: Path) -> int:
    """Write `source` repeated until the file holds at least `megabytes` MB; return its size in bytes."""
    data = source.read_bytes()
    repeats = max(1, int(megabytes * 1e6 // len(data)) + 1)
    with open(dest, "wb") as out:
        for _ in range(repeats):
            out.write(data)
    return len(data) * repeats


def bench_prepare(
    spec: DatasetSpec, source: Path, tokenizer: Tokenizer, megabytes: float, workers: int
) -> dict[str, Any]:
    """Seconds and MB/s to prepare the same corpus with 1 worker and with `workers`; outputs must match."""
    with tempfile.TemporaryDirectory(prefix="lmtrain-bench-") as tmp:
        corpus = Path(tmp) / "wiki.train.raw"
        size = build_corpus(source, megabytes, corpus)
        runs = {}
        for n in sorted({1, workers}):
            options = PrepareOptions(workers=n, force=True, block_bytes=min(4 << 20, max(64 << 10, size // (4 * n))))
            runs[n] = prepare_file(spec, "train", corpus, tokenizer, Path(tmp) / f"cache-{n}", options=options)
        one, many = runs[1], runs[workers]
        identical = np.array_equal(np.asarray(one.splits["train"].tokens()), np.asarray(many.splits["train"].tokens()))
    mb = size / 1e6
    return {
        "bench": "prepare",
        "megabytes": round(mb, 1),
        "tokens": one.splits["train"].num_tokens,
        "workers": workers,
        "seconds_1_worker": round(one.seconds, 2),
        f"seconds_{workers}_workers": round(many.seconds, 2),
        "mb_per_s_1_worker": round(mb / one.seconds, 1),
        f"mb_per_s_{workers}_workers": round(mb / many.seconds, 1),
        "mb_per_s_per_core": round(mb / many.seconds / workers, 1),
        "speedup": round(one.seconds / many.seconds, 2),
        "identical_output": identical,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }


def hf_tokenizer_for(tokenizer: Tokenizer):  # -> transformers.PreTrainedTokenizerFast
    """The transformers fast tokenizer equal to `tokenizer` (GPT-2 BPE from its files, or a tokenizer.json)."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    if isinstance(tokenizer, GPT2Tokenizer) and tokenizer.source.folder is not None:
        folder = Path(tokenizer.source.folder)
        bpe = tokenizers.models.BPE.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe"))
        backend = tokenizers.Tokenizer(bpe)
        backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tokenizers.decoders.ByteLevel()
        return PreTrainedTokenizerFast(tokenizer_object=backend)
    if isinstance(tokenizer, HFTokenizer):
        return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer.path))
    raise ConfigError("bench prepare --against hf needs the GPT-2 BPE files or a tokenizer.json for both sides")


def _hf_inputs(source: Source, text_field: str) -> tuple[str, dict[str, Any], str]:
    """(load_dataset builder, its data_files and options, the text column) for a source's files."""
    formats = {f.format for f in source.files}
    if len(formats) != 1 or any(f.compression == ".zst" for f in source.files):
        raise ConfigError("bench prepare --against hf needs the corpus files to be of one format, not zstd")
    fmt = formats.pop()
    builder = {"text": "text", "jsonl": "json", "json": "json", "parquet": "parquet"}.get(fmt)
    if builder is None:
        raise ConfigError(f"bench prepare --against hf does not read {fmt} inputs")
    files = [str(f.path) for f in source.files]
    if builder == "text":  # one row per line, the line ends kept: the text lmtrain tokenizes
        return builder, {"data_files": files, "keep_linebreaks": True}, "text"
    return builder, {"data_files": files}, text_field


def _hf_side(corpus: Corpus, hf_tok: Any, text_field: str, workers: int, cache: Path) -> dict[str, Any]:
    """Seconds and tokens of load_dataset + map(tokenize, batched, num_proc) over every source of the corpus."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(f"bench prepare --against hf needs `datasets`: {DATA_EXTRA}") from None
    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    tokens = 0
    for i, source in enumerate(dict.fromkeys(corpus.sources.values())):
        builder, kwargs, column = _hf_inputs(source, text_field)
        ds = datasets.load_dataset(builder, split="train", cache_dir=str(cache / f"hf-{i}"), **kwargs)
        mapped = ds.map(
            lambda batch, column=column: hf_tok(batch[column]),
            batched=True,
            num_proc=workers,
            remove_columns=ds.column_names,
        )
        tokens += sum(len(ids) for ids in mapped.with_format("arrow")["input_ids"].to_pylist())
    return {"seconds": time.perf_counter() - t0, "tokens": tokens}


def bench_against_hf(
    spec: DatasetSpec, corpus: Corpus, tokenizer: Tokenizer, *, text_field: str, workers: int
) -> dict[str, Any]:
    """lmtrain's prepare (all cores, cold cache) against HF datasets + tokenizers on the same files, in one run."""
    size = sum(f.path.stat().st_size for f in corpus.files())
    hf_tok = hf_tokenizer_for(tokenizer)
    with tempfile.TemporaryDirectory(prefix="lmtrain-bench-") as tmp:
        paths = DataPaths(None, None, Path(tmp) / "ours", download=False)
        options = PrepareOptions(text_field=text_field, workers=workers, force=True)
        t0 = time.perf_counter()
        ours = prepare_corpus(spec, corpus, paths, tokenizer, options)
        ours_s = time.perf_counter() - t0
        our_tokens = sum(p.num_tokens - p.summary()["documents"] + 1 for p, _ in ours.values())
        theirs = _hf_side(corpus, hf_tok, text_field, workers, Path(tmp))
        sample = next(iter(ours.values()))[0].tokens()
        ends = np.flatnonzero(np.asarray(sample[: min(len(sample), 200_000)]) == tokenizer.eot_id)
        first_doc = np.asarray(sample[: ends[0] if len(ends) else min(len(sample), 2000)]).tolist()
        text = tokenizer.decode(first_doc)
        same_ids = hf_tok(text)["input_ids"] == first_doc
    mb = size / 1e6
    return {
        "bench": "prepare-against-hf",
        "dataset": spec.name,
        "megabytes": round(mb, 1),
        "workers": workers,
        "tokenizer": tokenizer.describe(),
        "lmtrain": {"seconds": round(ours_s, 2), "mb_per_s": round(mb / ours_s, 2), "tokens": our_tokens},
        "hf": {
            "seconds": round(theirs["seconds"], 2),
            "mb_per_s": round(mb / theirs["seconds"], 2),
            "tokens": theirs["tokens"],
            "recipe": f"datasets.load_dataset + Dataset.map(tokenizer, batched=True, num_proc={workers})",
        },
        "speedup": round(theirs["seconds"] / ours_s, 2),
        "same_ids_on_first_document": same_ids,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }
