"""`lmtrain prepare`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse

from lmtrain.cli.common import add_corpus_options, add_data_options, corpus_config, data_paths, log, print_json
from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import SPLITS, get_dataset
from lmtrain.data.prepare import BLOCK_BYTES, PrepareOptions, default_workers, prepare_corpus
from lmtrain.data.tokenizers import open_tokenizer
from lmtrain.errors import ConfigError


def _splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise argparse.ArgumentTypeError(
            f"invalid split {bad[0] if bad else text!r}; use a comma list of {', '.join(SPLITS)}"
        )
    return splits


ABOUT = "`lmtrain prepare`: locate (or download) a dataset or read your corpus, and tokenize its splits into the cache."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="tokenize a dataset into the cache",
        description=ABOUT,
        epilog="--dataset text --data-dir PATH reads a file, a folder, a glob or a datasets folder: .txt/.md/.rst "
        "(documents separated by <|endoftext|> lines), .jsonl/.json, .parquet, each optionally .gz/.bz2/.xz/.zst. "
        "Splits without files of their own are held out of the rest by a seeded hash of each document. "
        "Exit codes: 0 done, 2 bad input.",
    )
    add_data_options(p)
    add_corpus_options(p)
    p.add_argument(
        "--splits", type=_splits, default=list(SPLITS), help="comma list of splits (default train,valid,test)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help=f"tokenizer processes (default: all cores, {default_workers()} here)"
    )
    p.add_argument(
        "--shard-mb",
        type=float,
        default=BLOCK_BYTES / (1 << 20),
        help=f"MiB of input per shard and unit of work (default {BLOCK_BYTES >> 20}); a killed prepare redoes only "
        "unfinished shards",
    )
    p.add_argument("--force", action="store_true", help="tokenize again even if the cache holds the result")
    p.add_argument("--json", action="store_true", help="print a JSON object keyed by split")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers={args.workers} must be at least 1")
    if not args.shard_mb > 0:
        raise ConfigError(f"--shard-mb={args.shard_mb} must be > 0")
    spec = get_dataset(args.dataset)
    if spec.name == "chat":
        raise ConfigError(
            "conversations are prepared by `lmtrain train --dataset chat` (or `lmtrain doctor`), which renders them "
            "with the model's chat template; `lmtrain prepare` reads text corpora"
        )
    paths = data_paths(args)
    corpus_cfg = corpus_config(args)
    tokenizer = open_tokenizer(corpus_cfg.tokenizer, paths.tokenizer_search())
    log(f"{spec.name}: tokenizer {tokenizer.describe()}")
    corpus = find_corpus(spec, args.splits, paths, corpus_cfg.holdout_options(), log=log)
    options = PrepareOptions(
        text_field=corpus_cfg.text_field,
        workers=args.workers,
        block_bytes=max(1, int(args.shard_mb * (1 << 20))),
        force=args.force,
        log=log,
    )
    results = prepare_corpus(spec, corpus, paths, tokenizer, options)
    rows = {
        split: {
            **prepared.summary(),
            "dtype": prepared.meta["dtype"],
            "shards": len(prepared.info["shards"]),
            "seconds": round(result.seconds, 3),
            "cached": result.cached,
            "reused_units": result.reused_units,
            "files": len(result.source.files),
            "held_out": result.source.split is None and split != "train",
            "path": str(prepared.folder),
        }
        for split, (prepared, result) in results.items()
    }
    if args.json:
        print_json(rows)
        return 0
    print(
        f"{'split':<6} {'documents':>9} {'tokens':>12} {'original tokens':>15} {'bytes':>13} {'seconds':>8}  prepared"
    )
    for split, r in rows.items():
        state = "cached" if r["cached"] else "new"
        held = ", held out" if r["held_out"] else ""
        print(
            f"{split:<6} {r['documents']:>9,} {r['tokens']:>12,} {r['original_tokens']:>15,} {r['bytes']:>13,} "
            f"{r['seconds']:>8.2f}  {r['path']} ({state}{held})"
        )
    return 0
