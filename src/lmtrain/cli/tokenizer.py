"""`lmtrain tokenizer train`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmtrain.cli.common import add_corpus_options, corpus_config, data_paths, log, print_json

ABOUT = "`lmtrain tokenizer train`: learn a byte-level BPE from your corpus, for `--tokenizer DIR`."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a tokenizer on your corpus", description=ABOUT)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    train = actions.add_parser(
        "train",
        help="train a byte-level BPE (HF tokenizers, all cores) on the train documents of a corpus",
        description="Train a byte-level BPE with GPT-2's pre-tokenization and one special token, <|endoftext|>, "
        "on the train documents of CORPUS (what --dataset text --data-dir reads: a file, folder, glob or datasets "
        "folder; held-out documents are left out), and write it to --out for --tokenizer DIR. Exit codes: 0 done, "
        "2 bad input.",
    )
    train.add_argument("corpus", type=Path, metavar="CORPUS", help="file, folder, glob or datasets folder")
    train.add_argument("--vocab-size", type=int, required=True, help="ids in the vocabulary, <|endoftext|> included")
    train.add_argument("--out", type=Path, required=True, help="new folder to write the tokenizer to")
    train.add_argument("--min-frequency", type=int, default=2, help="fewest occurrences of a merged pair (default 2)")
    train.add_argument("--json", action="store_true", help="print what was trained as JSON")
    add_corpus_options(train, tokenizer=False)
    train.set_defaults(handler=run_train, cache_dir=None, no_download=True)


def run_train(args: argparse.Namespace) -> int:
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.datasets import get_dataset
    from lmtrain.data.tokenizers.training import train_texts, train_tokenizer
    from lmtrain.errors import ConfigError

    if args.min_frequency < 1:
        raise ConfigError(f"--min-frequency {args.min_frequency} must be at least 1")
    args.data_dir = args.corpus
    cfg = corpus_config(args)
    corpus = find_corpus(get_dataset("text"), ["train"], data_paths(args), cfg.holdout_options(), log=log)
    source = corpus.sources["train"]
    about = {"corpus": str(args.corpus.resolve()), "files": len(source.files), "text_field": cfg.text_field}
    if source.holdout is not None:
        about["holdout"] = source.holdout.to_json()
    tokenizer = train_tokenizer(
        train_texts(source, cfg.text_field),
        vocab_size=args.vocab_size,
        out=args.out,
        about=about,
        min_frequency=args.min_frequency,
        progress=sys.stderr.isatty(),
        log=log,
    )
    summary = {"out": str(args.out), "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id, **about}
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {args.out}: {tokenizer.vocab_size:,} ids, end of document {tokenizer.eot_id}; use --tokenizer {args.out}"
        )
    return 0
