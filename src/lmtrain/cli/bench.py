"""`lmtrain bench`: throughput benchmarks, each measured as a ratio against a peer in the same run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_device_option, data_paths, log, print_json
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
    gen = benches.add_parser(
        "generate",
        help="KV-cache speed-up: greedy tokens with and without the cache",
        description="Generate the same greedy tokens with and without the KV cache and report the speed-up.",
    )
    gen.add_argument("--preset", default="small", help="randomly initialised preset to time (default small)")
    gen.add_argument("--checkpoint", type=Path, help="time this checkpoint instead of a preset")
    gen.add_argument("--new-tokens", type=int, default=256, help="tokens to generate (default 256)")
    gen.add_argument("--prompt-tokens", type=int, default=16, help="prompt length (default 16)")
    add_device_option(gen)
    gen.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    gen.set_defaults(handler=run_generate)


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
    return _emit(result, args.out)


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from lmtrain.bench.generate import bench_generate
    from lmtrain.checkpoint import load_model, resolve_checkpoint
    from lmtrain.model.gpt import GPT
    from lmtrain.presets import get_preset
    from lmtrain.runtime import select_device

    device = select_device(args.device)
    if args.checkpoint:
        model, _ = load_model(resolve_checkpoint(args.checkpoint, "best"), device)
        what = str(args.checkpoint)
    else:
        torch.manual_seed(0)
        model, what = GPT(get_preset(args.preset)).to(device).eval(), f"preset {args.preset} (random weights)"
    if args.prompt_tokens + args.new_tokens > model.config.max_seq_len:
        raise ConfigError(
            f"--prompt-tokens {args.prompt_tokens} + --new-tokens {args.new_tokens} exceed the model's "
            f"max_seq_len={model.config.max_seq_len}; pick a preset with a longer context"
        )
    log(f"bench generate: {what}, {args.new_tokens} new tokens after {args.prompt_tokens}, on {device}")
    result = bench_generate(model, device, args.new_tokens, args.prompt_tokens) | {"model": what}
    return _emit(result, args.out)


def _emit(result: dict, out: Path | None) -> int:
    """Print a benchmark result as JSON and, with --out, also write it to that file."""
    print_json(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
