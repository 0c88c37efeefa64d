"""`lmtrain bench generate`: greedy tokens with and without the KV cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_arch_option, add_device_option, emit_result, log
from lmtrain.errors import ConfigError


def register_bench(benches: argparse._SubParsersAction) -> None:
    gen = benches.add_parser(
        "generate",
        help="KV-cache speed-up: greedy tokens with and without the cache",
        description="Generate the same greedy tokens with and without the KV cache and report the speed-up.",
    )
    gen.add_argument("--preset", default="small", help="randomly initialised preset to time (default small)")
    add_arch_option(gen)
    gen.add_argument("--checkpoint", type=Path, help="time this checkpoint instead of a preset")
    gen.add_argument("--new-tokens", type=int, default=256, help="tokens to generate (default 256)")
    gen.add_argument("--prompt-tokens", type=int, default=16, help="prompt length (default 16)")
    add_device_option(gen)
    gen.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    gen.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from lmtrain.bench.generate import bench_generate
    from lmtrain.checkpoint import load_model, resolve_checkpoint
    from lmtrain.model.registry import build_model
    from lmtrain.presets import get_preset
    from lmtrain.runtime import select_device

    device = select_device(args.device)
    if args.checkpoint:
        model, _ = load_model(resolve_checkpoint(args.checkpoint, "best"), device)
        what = str(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(get_preset(args.preset, args.arch)).to(device).eval()
        what = f"preset {args.preset} --arch {args.arch} (random weights)"
    if args.prompt_tokens + args.new_tokens > model.config.max_seq_len:
        raise ConfigError(
            f"--prompt-tokens {args.prompt_tokens} + --new-tokens {args.new_tokens} exceed the model's "
            f"max_seq_len={model.config.max_seq_len}; pick a preset with a longer context"
        )
    log(f"bench generate: {what}, {args.new_tokens} new tokens after {args.prompt_tokens}, on {device}")
    result = bench_generate(model, device, args.new_tokens, args.prompt_tokens) | {"model": what}
    return emit_result(result, args.out)
