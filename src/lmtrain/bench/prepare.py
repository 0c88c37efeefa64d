"""Prepare throughput: one worker against all cores on the same text, in one run."""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lmtrain.data.datasets import DatasetSpec
from lmtrain.data.prepare import prepare_split
from lmtrain.data.tokenizer import Tokenizer


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
            result = prepare_split(spec, "train", corpus, tokenizer, Path(tmp) / f"cache-{n}", workers=n, force=True)
            runs[n] = result
        one, many = runs[1], runs[workers]
        identical = one.prepared.bin_path.read_bytes() == many.prepared.bin_path.read_bytes()
        shutil.rmtree(Path(tmp) / "cache-1", ignore_errors=True)
    mb = size / 1e6
    return {
        "bench": "prepare",
        "megabytes": round(mb, 1),
        "tokens": one.prepared.num_tokens,
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
