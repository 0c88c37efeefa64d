"""`lmtrain eval`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from lmtrain.cli.common import (
    add_corpus_options,
    add_data_options,
    add_inference_options,
    corpus_config,
    data_paths,
    log,
    print_json,
)
from lmtrain.data.datasets import DEFAULT_DATASET, SPLITS, get_dataset
from lmtrain.errors import ConfigError, DataError

EVAL_BATCH_TOKENS = 4096
"""Tokens per forward pass of `lmtrain eval` by default: 32 windows of 128, 4 of 1,024 (logits are chunked, so memory
holds only the hidden states). On the 2-core CPU 1,024 tokens per pass scored at 2.8x the training throughput."""


ABOUT = "`lmtrain eval`: token, word and byte perplexity of a checkpoint on a split, with sliding windows."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="perplexity of a checkpoint on a split",
        description=ABOUT,
        epilog="A run folder means its best checkpoint (else its latest). No architecture flags are "
        "needed: the checkpoint describes the model.",
    )
    p.add_argument("checkpoint", type=Path, metavar="RUN_OR_CHECKPOINT", help="run folder or checkpoint folder")
    add_data_options(p, dataset=False)
    add_corpus_options(p, tokenizer=False)
    p.add_argument("--dataset", help="dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", help="valid, test or train (default test)")
    p.add_argument(
        "--context",
        type=int,
        help="tokens per window, at most max_seq_len (default: the training window, else max_seq_len)",
    )
    p.add_argument("--stride", type=int, help="tokens scored per window (default: the context, no overlap)")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"windows per forward pass (default: {EVAL_BATCH_TOKENS:,} tokens' worth, at least 1)",
    )
    add_inference_options(p)
    p.add_argument("--json", action="store_true", help="print the figures as a JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lmtrain.checkpoint import open_checkpoint
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.prepare import PrepareOptions, prepare_corpus
    from lmtrain.data.tokenizers import carried_tokenizer
    from lmtrain.eval.perplexity import perplexity_report, score_tokens
    from lmtrain.runtime import autocast, select_dtype

    ckpt, model, config, device = open_checkpoint(args.checkpoint, args.device, weights=args.weights)
    trained_on = config.get("data", {})
    dataset = args.dataset or trained_on.get("dataset") or DEFAULT_DATASET
    spec = get_dataset(dataset)
    if args.split not in SPLITS:
        raise DataError(f"unknown split {args.split!r}; choose one of {', '.join(SPLITS)}")
    same_data = dataset == trained_on.get("dataset")
    if args.data_dir is None and same_data and trained_on.get("data_dir"):
        if Path(trained_on["data_dir"]).exists() or any(c in trained_on["data_dir"] for c in "*?["):
            args.data_dir = Path(trained_on["data_dir"])
    corpus_cfg = corpus_config(args, trained_on if same_data else None)
    max_len = model.config.max_seq_len
    trained_len = int(trained_on.get("seq_len") or max_len)
    context = args.context or trained_len
    stride = args.stride or context
    if not 1 <= context <= max_len:
        raise ConfigError(f"--context {context} must be between 1 and the model's max_seq_len={max_len}")
    if context > trained_len:
        log(f"note: the model was trained on windows of {trained_len} tokens; positions past them are untrained")
    if not 1 <= stride <= context:
        raise ConfigError(f"--stride {stride} must be between 1 and the context ({context})")
    batch_size = args.batch_size if args.batch_size is not None else max(1, EVAL_BATCH_TOKENS // context)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be at least 1")
    dtype = select_dtype(args.dtype, device)
    paths = data_paths(args)
    tokenizer = carried_tokenizer(ckpt, config.get("tokenizer"), paths.tokenizer_search())
    corpus = find_corpus(spec, [args.split], paths, corpus_cfg.holdout_options(), log=log)
    options = PrepareOptions(text_field=corpus_cfg.text_field, log=log)
    prepared = prepare_corpus(spec, corpus, paths, tokenizer, options)[args.split][0]
    log(f"{ckpt}: {spec.name} {args.split}, {prepared.num_tokens:,} tokens, context {context}, stride {stride}")
    t0 = time.perf_counter()
    scores = score_tokens(
        model,
        prepared.tokens(),
        context=context,
        stride=stride,
        batch_size=batch_size,
        eot_id=tokenizer.eot_id,
        device=device,
        autocast=lambda: autocast(device, dtype),
    )
    report = perplexity_report(
        scores,
        original_tokens=prepared.summary()["original_tokens"],
        n_bytes=prepared.summary()["bytes"],
        context=context,
        stride=stride,
        seconds=time.perf_counter() - t0,
    )
    result = dataclasses.asdict(report) | {"dataset": spec.name, "split": args.split, "checkpoint": str(ckpt)}
    if args.json:
        print_json(result)
        return 0
    print(f"checkpoint      {ckpt}")
    print(
        f"data            {spec.name} {args.split}: {report.tokens:,} tokens, {report.original_tokens:,} original "
        f"tokens (words + lines), {report.bytes:,} bytes"
    )
    print(f"windows         {report.windows:,} of {context} tokens, stride {stride}, {report.seconds:.1f} s")
    print(f"nll per token   {report.nll_per_token:.4f}")
    print(f"token ppl       {report.token_ppl:,.3f}")
    print(f"word ppl        {report.word_ppl:,.3f}")
    print(f"bits per byte   {report.bits_per_byte:.4f}")
    return 0
