"""`lmtrain bench tasks`: the batched benchmark scorer against the one-at-a-time reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_arch_option, add_data_options, add_device_option, data_paths, emit_result, log

DEFAULT_MAX_PER_TASK = 100


def register_bench(benches: argparse._SubParsersAction) -> None:
    """The `bench tasks` subcommand."""
    p = benches.add_parser(
        "tasks",
        help="benchmark-task scoring speed: batched against one item at a time, results compared item by item",
        description="Score the same items of benchmark tasks with lmtrain's batched scorer and with the plain "
        "one-item-at-a-time reference on the same model and device; report items/s of both, the ratio, and whether "
        "every item's result is the same.",
    )
    p.add_argument("--preset", default="tiny", help="randomly initialised preset to time (default tiny)")
    add_arch_option(p)
    p.add_argument("--checkpoint", type=Path, help="time this checkpoint (a run folder: its best) instead of a preset")
    p.add_argument("--tasks", default="core", help="tasks to score, as for lmtrain eval --tasks (default core)")
    p.add_argument("--tasks-dir", type=Path, help="folder of task files in the CORE layout")
    p.add_argument(
        "--max-per-task",
        type=int,
        default=DEFAULT_MAX_PER_TASK,
        metavar="N",
        help=f"items of each task, the first N of its shuffled order (default {DEFAULT_MAX_PER_TASK})",
    )
    p.add_argument("--batch-tokens", type=int, metavar="N", help="padded tokens per forward pass of the batched scorer")
    add_data_options(p, dataset=False)
    add_device_option(p)
    p.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    p.set_defaults(handler=run_tasks_bench)


def run_tasks_bench(args: argparse.Namespace) -> int:
    import torch

    from lmtrain.bench.tasks import bench_tasks
    from lmtrain.data.tokenizers import open_tokenizer
    from lmtrain.interop.open import open_model
    from lmtrain.model.registry import build_model
    from lmtrain.presets import get_preset
    from lmtrain.runtime import select_device
    from lmtrain.tasks.evaluate import load_tasks
    from lmtrain.tasks.locate import TaskPaths
    from lmtrain.tasks.score import check_budget

    check_budget(args.batch_tokens)
    paths = data_paths(args)
    tasks = load_tasks(args.tasks, TaskPaths(args.tasks_dir, paths), args.max_per_task, log=log)
    device = select_device(args.device)
    if args.checkpoint:
        opened = open_model(args.checkpoint)
        model, tokenizer = opened.model(device), opened.tokenizer(paths.tokenizer_search())
        what = str(opened.path)
    else:
        torch.manual_seed(0)
        model = build_model(get_preset(args.preset, args.arch)).to(device).eval()
        tokenizer = open_tokenizer("gpt2", paths.tokenizer_search())
        what = f"preset {args.preset} --arch {args.arch} (random weights)"
    log(f"bench tasks: {what}, {len(tasks)} tasks, {sum(len(t.items) for t in tasks):,} items, on {device}")
    result = bench_tasks(model, tokenizer, tasks, device=device, budget=args.batch_tokens, log=log)
    return emit_result(result | {"model": what, "max_per_task": args.max_per_task}, args.out)
