"""`lmtrain bench recipe`: a race of training recipes on the same data and tokens, several seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_device_option, emit_result, log


def register_bench(benches: argparse._SubParsersAction) -> None:
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
