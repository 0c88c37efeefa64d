"""`lmtrain prepare`: locate (or download) a dataset and tokenize its splits into the cache."""

from __future__ import annotations

import argparse

from lmtrain.cli.common import add_data_options, data_paths, log, print_json
from lmtrain.data.datasets import SPLITS, get_dataset, locate_splits
from lmtrain.data.prepare import default_workers, prepare_dataset
from lmtrain.data.tokenizer import load_tokenizer
from lmtrain.errors import ConfigError


def _splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise argparse.ArgumentTypeError(
            f"invalid split {bad[0] if bad else text!r}; use a comma list of {', '.join(SPLITS)}"
        )
    return splits


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenize a dataset into the cache", description=__doc__)
    add_data_options(p)
    p.add_argument(
        "--splits", type=_splits, default=list(SPLITS), help="comma list of splits (default train,valid,test)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help=f"tokenizer processes (default: all cores, {default_workers()} here)"
    )
    p.add_argument("--force", action="store_true", help="tokenize again even if the cache holds the result")
    p.add_argument("--json", action="store_true", help="print a JSON object keyed by split")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers={args.workers} must be at least 1")
    spec = get_dataset(args.dataset)
    paths = data_paths(args)
    sources = locate_splits(spec, args.splits, paths, log=log)
    tokenizer = load_tokenizer(paths.tokenizer_search())
    log(f"{spec.name}: GPT-2 BPE from {tokenizer.source.describe()}")
    results = prepare_dataset(spec, sources, paths, tokenizer, workers=args.workers, force=args.force)
    if args.json:
        print_json(
            {
                split: {
                    **r.prepared.summary(),
                    "seconds": round(r.seconds, 3),
                    "cached": r.cached,
                    "source": str(r.source),
                    "path": str(r.prepared.bin_path),
                }
                for split, r in results.items()
            }
        )
        return 0
    print(
        f"{'split':<6} {'documents':>9} {'tokens':>12} {'original tokens':>15} {'bytes':>13} {'seconds':>8}  prepared"
    )
    for split, r in results.items():
        s = r.prepared.summary()
        state = "cached" if r.cached else "new"
        print(
            f"{split:<6} {s['documents']:>9,} {s['tokens']:>12,} {s['original_tokens']:>15,} {s['bytes']:>13,} "
            f"{r.seconds:>8.2f}  {r.prepared.bin_path} ({state})"
        )
    return 0
