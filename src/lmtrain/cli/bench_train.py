"""`lmtrain bench train`: training throughput, tokens/s and MFU, optionally against transformers; argument parsing only (`bench/train.py` decides what to measure)."""

from __future__ import annotations

import argparse
import os
import typing
from pathlib import Path

from lmtrain.cli.common import (
    add_arch_option,
    add_device_option,
    add_model_options,
    default_cache_dir,
    emit_result,
    log,
    model_overrides,
)
from lmtrain.model.config import LossImpl
from lmtrain.train_config import DType, Optimizer, Parallel


def register_bench(benches: argparse._SubParsersAction) -> None:
    train = benches.add_parser(
        "train",
        help="training throughput, tokens/s and MFU, optionally against transformers",
        description="Time whole optimizer steps (forward, backward, clip, AdamW) on random tokens with the trainer's "
        "own step, after warm-up; report tokens/s, step time, TFLOP/s, MFU against the measured peak and peak memory. "
        "--batch-size and --micro-batch-size mean what they mean for lmtrain train.",
    )
    train.add_argument("--preset", default="tiny", help="model preset (default tiny)")
    add_arch_option(train)
    add_model_options(train)
    add_device_option(train)
    train.add_argument(
        "--dtype",
        choices=typing.get_args(DType),
        default="auto",
        help="autocast precision (default auto: bf16 on a GPU that has it, else fp32)",
    )
    train.add_argument(
        "--batch-size", type=int, default=8, help="sequences per optimizer step, the global batch (default 8)"
    )
    train.add_argument(
        "--micro-batch-size",
        type=int,
        help="sequences per forward/backward; gradients accumulate over the rest (default: a rank's whole share)",
    )
    train.add_argument("--seq-len", type=int, help="tokens per sequence (default: the model's max_seq_len)")
    train.add_argument("--steps", type=int, default=10, help="timed optimizer steps per model (default 10)")
    train.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (default 3)")
    train.add_argument("--compile", action="store_true", help="torch.compile both models")
    train.add_argument(
        "--loss",
        choices=typing.get_args(LossImpl),
        default="fused",
        help="lmtrain's LM head + loss: fused (default) or plain full logits",
    )
    train.add_argument(
        "--optimizer",
        choices=typing.get_args(Optimizer),
        default="adamw",
        help="lmtrain's optimizer: adamw (default) or muon; transformers always gets AdamW",
    )
    train.add_argument(
        "--against",
        choices=("hf",),
        help="also time the transformers class the architecture exports to (GPT2LMHeadModel, LlamaForCausalLM, "
        "Qwen2ForCausalLM or Qwen3ForCausalLM)",
    )
    train.add_argument(
        "--profile", action="store_true", help="add the top operators of 3 profiled steps (torch.profiler)"
    )
    train.add_argument(
        "--parallel",
        choices=typing.get_args(Parallel),
        default="ddp",
        help="under torchrun: ddp (default) or fsdp; reports per-rank and total tokens/s and the scaling efficiency "
        "against one rank alone",
    )
    train.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="under torchrun: seconds a rank waits for the others (default 600)",
    )
    train.add_argument(
        "--max-batch",
        type=int,
        metavar="LIMIT",
        help="instead: find the largest micro-batch up to LIMIT whose step fits in memory",
    )
    train.add_argument(
        "--best-batch",
        type=int,
        metavar="LIMIT",
        help="instead: the micro-batch up to LIMIT with the most tokens/s (the largest that fits, then each power of "
        "two up to it, each timed for --steps steps)",
    )
    train.add_argument(
        "--cache-dir",
        type=Path,
        help="where the measured peak is cached (default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain)",
    )
    train.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    train.set_defaults(handler=run_train_bench)


def run_train_bench(args: argparse.Namespace) -> int:
    from lmtrain.bench.timing import TrainBench
    from lmtrain.bench.train import train_bench
    from lmtrain.distributed.world import init_world
    from lmtrain.presets import apply_overrides, get_preset
    from lmtrain.runtime import configure_device, select_dtype

    cfg = apply_overrides(get_preset(args.preset, args.arch), model_overrides(args))
    world = init_world(args.device, args.parallel, args.dist_timeout)
    try:
        configure_device(world.device)
        bench = TrainBench(
            model=cfg,
            device=world.device,
            dtype=select_dtype(args.dtype, world.device),
            batch_size=args.batch_size,
            micro_batch_size=args.micro_batch_size,
            seq_len=args.seq_len or cfg.max_seq_len,
            steps=args.steps,
            warmup=args.warmup_steps,
            compile=args.compile,
            loss=args.loss,
            optimizer=args.optimizer,
            parallel=args.parallel,
        )
        result = train_bench(
            bench,
            world,
            cache_dir=args.cache_dir or default_cache_dir(os.environ),
            max_batch_limit=args.max_batch,
            best_batch_limit=args.best_batch,
            against_hf=args.against == "hf",
            profile=args.profile,
            log=log,
        )
    finally:
        world.close()
    base = {"preset": args.preset, "device": str(world.device)}
    return emit_result(base | result, args.out) if result is not None else 0
