"""`lmtrain bench`: throughput benchmarks, each measured as a ratio against a peer in the same run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmtrain.cli.common import add_data_options, data_paths, log, print_json
from lmtrain.data.datasets import get_dataset, locate_split
from lmtrain.data.prepare import default_workers
from lmtrain.data.tokenizer import load_tokenizer
from lmtrain.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark", description=__doc__)
    benches = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    benches.required = True
    prep = benches.add_parser(
        "prepare",
        help="tokenizing throughput: 1 worker vs all cores",
        description="Prepare the same text (a split repeated to --mb MB) with 1 worker and with --workers.",
    )
    add_data_options(prep)
    prep.add_argument("--split", default="train", help="split whose text is repeated (default train)")
    prep.add_argument("--mb", type=float, default=200.0, help="size of the benchmark text in MB (default 200)")
    prep.add_argument(
        "--workers", type=int, default=default_workers(), help="workers to compare with one (default: all cores)"
    )
    prep.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    prep.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from lmtrain.bench.prepare import bench_prepare

    if args.mb <= 0 or args.workers < 1:
        raise ConfigError("--mb must be positive and --workers at least 1")
    spec = get_dataset(args.dataset)
    paths = data_paths(args)
    source = locate_split(spec, args.split, paths, log=log)
    tokenizer = load_tokenizer(paths.tokenizer_search())
    log(f"bench prepare: {args.mb:g} MB from {source}, 1 worker vs {args.workers}")
    result = bench_prepare(spec, source, tokenizer, args.mb, args.workers)
    print_json(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
