"""`lmtrain eval`: token, word and byte perplexity of a checkpoint on a split, with sliding windows."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from lmtrain.cli.common import add_data_options, add_device_option, data_paths, log, print_json
from lmtrain.data.datasets import DEFAULT_DATASET, get_dataset, locate_split
from lmtrain.errors import CheckpointError, ConfigError, DataError

EVAL_BATCH_TOKENS = 4096
"""Tokens per forward pass of `lmtrain eval` by default: 32 windows of 128, 4 of 1,024 (logits are chunked, so memory
holds only the hidden states). On the 2-core CPU 1,024 tokens per pass scored at 2.8x the training throughput."""


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype for commands that run a trained model."""
    add_device_option(parser)
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="autocast precision (default fp32, the exact figure)",
    )
    add_weights_option(parser)


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """--weights: which weights of a checkpoint to use."""
    parser.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                        help="auto (the EMA weights where the run kept them with --ema, else the raw weights), ema or raw")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="perplexity of a checkpoint on a split",
        description=__doc__,
        epilog="A run folder means its best checkpoint (else its latest). No architecture flags are "
        "needed: the checkpoint describes the model.",
    )
    p.add_argument("checkpoint", type=Path, metavar="RUN_OR_CHECKPOINT", help="run folder or checkpoint folder")
    add_data_options(p, dataset=False)
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


def open_checkpoint(
    path: Path, device_name: str, which: str = "best", weights: str = "auto"
) -> tuple[Path, Any, dict[str, Any], Any]:
    """(checkpoint folder, model on the device in eval mode with the chosen weights, its config.json, device)."""
    from lmtrain.checkpoint import load_model, resolve_checkpoint
    from lmtrain.runtime import select_device

    device = select_device(device_name)
    ckpt = resolve_checkpoint(path, which)
    model, config = load_model(ckpt, device, weights)
    return ckpt, model, config, device


def check_tokenizer(config: dict[str, Any], ckpt: Path) -> None:
    """The checkpoint must have been trained with the GPT-2 BPE lmtrain uses."""
    from lmtrain.data.tokenizer import gpt2_fingerprint

    if "tokenizer" in config and config["tokenizer"] != gpt2_fingerprint():
        raise CheckpointError(f"{ckpt} was trained with another tokenizer ({config['tokenizer'].get('name')})")


def run(args: argparse.Namespace) -> int:
    from lmtrain.data.prepare import prepare_split
    from lmtrain.data.tokenizer import load_tokenizer
    from lmtrain.eval.perplexity import perplexity_report, score_tokens
    from lmtrain.runtime import autocast, select_dtype

    ckpt, model, config, device = open_checkpoint(args.checkpoint, args.device, weights=args.weights)
    check_tokenizer(config, ckpt)
    trained_on = config.get("data", {})
    dataset = args.dataset or trained_on.get("dataset") or DEFAULT_DATASET
    spec = get_dataset(dataset)
    if args.split not in spec.files:
        raise DataError(f"unknown split {args.split!r}; choose one of {', '.join(spec.files)}")
    if args.data_dir is None and dataset == trained_on.get("dataset") and trained_on.get("data_dir"):
        if Path(trained_on["data_dir"]).is_dir():
            args.data_dir = Path(trained_on["data_dir"])
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
    source = locate_split(spec, args.split, paths, log=log)
    tokenizer = load_tokenizer(paths.tokenizer_search())
    prepared = prepare_split(spec, args.split, source, tokenizer, paths.cache_dir).prepared
    log(f"{ckpt}: {spec.name} {args.split}, {prepared.num_tokens:,} tokens, context {context}, stride {stride}")
    t0 = time.perf_counter()
    scores = score_tokens(
        model,
        prepared.tokens(),
        context,
        stride,
        batch_size,
        tokenizer.eot_id,
        device,
        lambda: autocast(device, dtype),
    )
    report = perplexity_report(
        scores,
        int(prepared.meta["original_tokens"]),
        int(prepared.meta["bytes"]),
        context,
        stride,
        time.perf_counter() - t0,
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
