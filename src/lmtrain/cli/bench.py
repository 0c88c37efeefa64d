"""`lmtrain bench`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from lmtrain.cli.common import (
    add_arch_option,
    add_corpus_options,
    add_data_options,
    add_device_option,
    add_model_options,
    corpus_config,
    data_paths,
    default_cache_dir,
    emit_result,
    log,
    model_overrides,
)
from lmtrain.data.datasets import SPLITS, get_dataset, locate_split
from lmtrain.data.prepare import default_workers
from lmtrain.errors import ConfigError
from lmtrain.model.config import LossImpl
from lmtrain.train_config import DType, Optimizer, Parallel

if TYPE_CHECKING:  # torch is imported only when a command runs
    from lmtrain.model.config import ModelConfig
    from lmtrain.train.distributed import World


ABOUT = "`lmtrain bench`: throughput benchmarks, each measured as a ratio against a peer in the same run."


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`lmtrain bench` and its benchmarks; returns its subcommands (`cli/__init__` adds `bench tasks` to them)."""
    p = sub.add_parser("bench", help="run a benchmark", description=ABOUT)
    benches = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    benches.required = True
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
        help="also time the transformers class the architecture exports to (GPT2LMHeadModel, LlamaForCausalLM or "
        "Qwen3ForCausalLM)",
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
    recipe = benches.add_parser(
        "recipe",
        help="a race of training recipes: same data and tokens, several seeds, one evaluation",
        description="Train each recipe with each seed on the same data for the same steps, score every run with "
        "`lmtrain eval RUN --split valid`, and print the table (mean and spread per recipe).",
    )
    recipe.add_argument(
        "recipes",
        nargs="+",
        metavar="RECIPE",
        help="lmtrain (the defaults), nanogpt (nanoGPT's AdamW recipe) or a .toml file of train keys",
    )
    recipe.add_argument("--seeds", type=int, nargs="+", default=[1337, 1], help="seeds (default 1337 1)")
    recipe.add_argument("--preset", default="tiny", help="model preset (default tiny)")
    add_data_options(recipe)
    add_device_option(recipe)
    recipe.add_argument("--seq-len", type=int, default=128, help="tokens per window (default 128)")
    recipe.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    recipe.add_argument("--max-steps", type=int, default=120, help="optimizer steps of every run (default 120)")
    recipe.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/recipe-race"),
        help="where the runs go (default runs/recipe-race; must be new or empty)",
    )
    recipe.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    recipe.set_defaults(handler=run_recipe_bench)
    peak = benches.add_parser(
        "peak",
        help="the device's peak matmul FLOP/s behind every MFU figure: show it, or --refresh it",
        description="Show the cached peak matmul throughput that MFU is measured against (measuring it if there is "
        "none). The peak is the best square matmul in the dtype, the size doubling until the throughput stops growing; "
        "a later measurement only ever raises it. --refresh measures it again and replaces it: run it on a quiet "
        "machine when an MFU above 100% says the cached peak was measured under load.",
    )
    add_device_option(peak)
    peak.add_argument(
        "--dtype",
        choices=typing.get_args(DType),
        default="auto",
        help="the dtype to measure (default auto: bf16 on a GPU that has it, else fp32)",
    )
    peak.add_argument("--refresh", action="store_true", help="measure again and replace the cached figure")
    peak.add_argument(
        "--cache-dir", type=Path, help="where the peak is cached (default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain)"
    )
    peak.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    peak.set_defaults(handler=run_peak_bench)
    return benches


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


def run_train_bench(args: argparse.Namespace) -> int:
    from lmtrain.presets import apply_overrides, get_preset
    from lmtrain.train.distributed import init_world

    cfg = apply_overrides(get_preset(args.preset, args.arch), model_overrides(args))
    world = init_world(args.device, args.parallel, args.dist_timeout)
    try:
        return _train_bench(args, cfg, world)
    finally:
        world.close()


def _train_bench(args: argparse.Namespace, cfg: ModelConfig, world: World) -> int:
    from lmtrain.bench.scaling import bench_scaling
    from lmtrain.bench.train import TrainBench, bench_train, checked_peak, max_batch
    from lmtrain.hardware import peak_flops
    from lmtrain.runtime import configure_device, select_dtype

    device = world.device
    dtype = select_dtype(args.dtype, device)
    configure_device(device)
    seq_len = args.seq_len or cfg.max_seq_len
    bench = TrainBench(
        model=cfg,
        device=device,
        dtype=dtype,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        seq_len=seq_len,
        steps=args.steps,
        warmup=args.warmup_steps,
        compile=args.compile,
        loss=args.loss,
        optimizer=args.optimizer,
        parallel=args.parallel,
    )
    split = bench.layout(world.world_size)
    ranks = f"{split.per_rank} per rank, " if world.world_size > 1 else ""
    what = (
        f"{args.preset}, batch {args.batch_size} x {seq_len} ({ranks}micro-batch {split.micro}, "
        f"accumulation {split.accumulation}), {dtype} on {device}"
    )
    base = {"preset": args.preset, "device": str(device)}
    if world.distributed:
        if args.max_batch is not None or args.best_batch is not None or args.against or args.profile:
            raise ConfigError(
                "under torchrun, bench train measures scaling; run --max-batch, --best-batch, --against and --profile "
                "in one process"
            )
        if world.is_main:
            log(f"bench train: {what}; one rank alone, then {world.world_size} ranks ({args.parallel})")
        result = bench_scaling(bench, world)
        return emit_result(base | result, args.out) if result is not None else 0
    if args.max_batch is not None and args.best_batch is not None:
        raise ConfigError("give --max-batch or --best-batch, not both")
    if args.max_batch is not None:
        if args.max_batch < 1:
            raise ConfigError("--max-batch must be at least 1")
        log(f"bench train: largest micro-batch up to {args.max_batch} for {what}")
        return emit_result(base | {"bench": "max_batch", "dtype": dtype} | max_batch(bench, args.max_batch), args.out)
    cache = args.cache_dir or default_cache_dir(os.environ)
    peak = peak_flops(device, dtype, cache)
    if args.best_batch is not None:
        from lmtrain.bench.batch import best_batch

        if args.best_batch < 1:
            raise ConfigError("--best-batch must be at least 1")
        log(f"bench train: the fastest micro-batch up to {args.best_batch} for {what}")
        return emit_result(
            base | {"device_name": peak.device_name} | best_batch(bench, peak, args.best_batch), args.out
        )
    log(f"bench train: {what}; peak {peak.measured_flops / 1e12:.3g} TFLOP/s measured ({peak.device_name})")
    result = bench_train(bench, peak, against_hf=args.against == "hf", profile=args.profile)
    result = checked_peak(result, device=device, dtype=dtype, cache_dir=cache)
    if result["peak_stale"]:
        log(f"note: {result['peak_note']}")
    return emit_result(base | {"device_name": peak.device_name} | result, args.out)


def run_peak_bench(args: argparse.Namespace) -> int:
    from lmtrain.hardware import PEAK_CACHE, peak_flops
    from lmtrain.runtime import configure_device, select_device, select_dtype

    device = select_device(args.device)
    configure_device(device)
    dtype = select_dtype(args.dtype, device)
    cache = args.cache_dir or default_cache_dir(os.environ)
    peak = peak_flops(device, dtype, cache, replace=args.refresh)
    log(
        f"bench peak: {peak.measured_flops / 1e12:.4g} TFLOP/s ({dtype}) on {peak.device_name}, n={peak.matmul_size}, "
        f"measured {peak.measured_at or 'by an earlier lmtrain'}; cached in {cache / PEAK_CACHE}"
    )
    return emit_result({"bench": "peak", "refreshed": args.refresh} | dataclasses.asdict(peak), args.out)


RACE_EVAL_WINDOWS = 8
"""Validation windows of each race run's own end-of-run evaluation: the race scores every run with `lmtrain eval
--split valid` afterwards, so the run's evaluation only gives its checkpoint a validation loss."""


def run_recipe_bench(args: argparse.Namespace) -> int:
    from lmtrain.bench.recipe import race, table
    from lmtrain.files import require_new_folder

    require_new_folder(args.workdir, "--workdir")
    base = {
        "preset": args.preset,
        "dataset": args.dataset,
        "device": args.device,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "max_steps": args.max_steps,
        "eval_every": 0,
        "eval_windows": RACE_EVAL_WINDOWS,
        "save_every": 0,
        "sample_tokens": 0,
        "log": "jsonl",
        "progress": "plain",
        "doctor": "off",
    }
    base |= {k: str(v) for k in ("data_dir", "cache_dir") if (v := getattr(args, k))}
    if args.no_download:
        base["no_download"] = True
    log(
        f"bench recipe: {', '.join(args.recipes)} x seeds {args.seeds}, {args.preset}, {args.max_steps} steps of "
        f"{args.batch_size} x {args.seq_len}"
    )
    result = race(args.recipes, seeds=args.seeds, base=base, out=args.workdir, run=args.lmtrain_main, log=log)
    for line in table(result):
        log(line)
    return emit_result(result, args.out)
