"""`lmtrain eval`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_corpus_options, add_data_options, add_inference_options, data_paths, log, print_json
from lmtrain.config import CORPUS_KEYS
from lmtrain.eval.checkpoint_eval import EVAL_BATCH_TOKENS

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
    from lmtrain.eval.checkpoint_eval import EvalRequest, evaluate_checkpoint

    request = EvalRequest(
        split=args.split,
        dataset=args.dataset,
        context=args.context,
        stride=args.stride,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        weights=args.weights,
        corpus={k: getattr(args, k) for k in CORPUS_KEYS if hasattr(args, k)},
    )
    result = evaluate_checkpoint(args.checkpoint, request, data_paths(args), log=log)
    if args.json:
        print_json(result.to_json())
        return 0
    report = result.report
    print(f"checkpoint      {result.checkpoint}")
    print(
        f"data            {result.dataset} {result.split}: {report.tokens:,} tokens, {report.original_tokens:,} "
        f"original tokens (words + lines), {report.bytes:,} bytes"
    )
    print(
        f"windows         {report.windows:,} of {report.context} tokens, stride {report.stride}, {report.seconds:.1f} s"
    )
    print(f"nll per token   {report.nll_per_token:.4f}")
    print(f"token ppl       {report.token_ppl:,.3f}")
    print(f"word ppl        {report.word_ppl:,.3f}")
    print(f"bits per byte   {report.bits_per_byte:.4f}")
    return 0
