"""Peak memory of `lmtrain prepare` on a large corpus of many files, measured on the whole process tree.

Builds a synthetic corpus of `--gb` GB by hard-linking one source file (e.g. ../shared/data/linux-docs/train.txt)
under many names in a folder (its held-out splits come from valid.txt and test.txt beside it), runs
`lmtrain prepare --dataset text --data-dir CORPUS` in a fresh cache, samples the summed RSS of the prepare process
and its workers every 0.2 s, and writes the peak, the time and the throughput as JSON.

Usage: .venv/bin/python bench/prepare_memory.py SOURCE_DIR --gb 5 --work /tmp/prep-mem [--out FILE]
(needs psutil: pip install 'lmtrain[data]')
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def tree_rss(proc) -> int:  # proc: psutil.Process
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--gb", type=float, default=5.0, help="size of the synthetic train corpus in GB (default 5)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (deleted afterwards)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    train = args.source / "train.txt"
    corpus = args.work / "corpus"
    shutil.rmtree(args.work, ignore_errors=True)
    (corpus / "train").mkdir(parents=True)
    copies = max(1, round(args.gb * 1e9 / train.stat().st_size))
    for i in range(copies):
        os.link(train, corpus / "train" / f"part-{i:04d}.txt")
    for split in ("valid", "test"):
        os.link(args.source / f"{split}.txt", corpus / f"{split}.txt")
    size = sum(p.stat().st_size for p in corpus.rglob("*.txt"))
    lmtrain = Path(sys.executable).with_name("lmtrain")
    cmd = [
        str(lmtrain),
        "prepare",
        "--dataset",
        "text",
        "--data-dir",
        str(corpus),
        "--cache-dir",
        str(args.work / "cache"),
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(watched))
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed with exit code {proc.returncode}")
    rows = json.loads(out)
    result = {
        "bench": "prepare-memory",
        "corpus": f"{copies} files, hard links of {train} ({train.stat().st_size:,} bytes), plus valid/test",
        "files": copies + 2,
        "gigabytes": round(size / 1e9, 2),
        "peak_rss_gib": round(peak / 2**30, 3),
        "seconds": round(seconds, 1),
        "mb_per_s": round(size / 1e6 / seconds, 2),
        "tokens": {split: row["tokens"] for split, row in rows.items()},
        "shards": {split: row["shards"] for split, row in rows.items()},
        "workers": len(os.sched_getaffinity(0)),
        "command": " ".join(cmd),
    }
    shutil.rmtree(args.work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
