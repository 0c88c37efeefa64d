"""`lmtrain bench prepare`: tokenizing throughput, 1 worker against all, or lmtrain against Hugging Face datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_corpus_options, add_data_options, corpus_config, data_paths, emit_result, log
from lmtrain.data.datasets import SPLITS, get_dataset, locate_split
from lmtrain.data.prepare import default_workers
from lmtrain.errors import ConfigError


def register_bench(benches: argparse._SubParsersAction) -> None:
    prep = benches.add_parser(
        "prepare",
        help="tokenizing throughput: 1 worker vs all cores, or lmtrain vs Hugging Face datasets (--against hf)",
        description="Prepare the same text (a split repeated to --mb MB) with 1 worker and with --workers; with "
        "--against hf, prepare the corpus itself (every split, cold cache) with lmtrain and with Hugging Face "
        "datasets + tokenizers (load_dataset, map batched with num_proc = --workers) in the same run and report "
        "both in MB/s and the speedup.",
    )
    add_data_options(prep)
    add_corpus_options(prep)
    prep.add_argument("--against", choices=("hf",), help="compare with Hugging Face datasets + tokenizers")
    prep.add_argument("--split", default="train", help="split whose text is repeated (default train)")
    prep.add_argument("--mb", type=float, default=200.0, help="size of the benchmark text in MB (default 200)")
    prep.add_argument(
        "--workers", type=int, default=default_workers(), help="workers to compare with one (default: all cores)"
    )
    prep.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    prep.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from lmtrain.bench.prepare import bench_against_hf, bench_prepare
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.tokenizers import open_tokenizer

    if args.mb <= 0 or args.workers < 1:
        raise ConfigError("--mb must be positive and --workers at least 1")
    spec = get_dataset(args.dataset)
    paths = data_paths(args)
    corpus_cfg = corpus_config(args)
    tokenizer = open_tokenizer(corpus_cfg.tokenizer, paths.tokenizer_search())
    if args.against == "hf":
        corpus = find_corpus(spec, list(SPLITS), paths, corpus_cfg.holdout_options(), log=log)
        log(f"bench prepare: {spec.name} with lmtrain and with HF datasets + tokenizers, {args.workers} workers")
        result = bench_against_hf(spec, corpus, tokenizer, text_field=corpus_cfg.text_field, workers=args.workers)
        return emit_result(result, args.out)
    source = locate_split(spec, args.split, paths, log=log)
    log(f"bench prepare: {args.mb:g} MB from {source}, 1 worker vs {args.workers}")
    result = bench_prepare(spec, source, tokenizer, args.mb, args.workers)
    return emit_result(result, args.out)
