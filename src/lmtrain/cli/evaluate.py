"""`lmtrain eval`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmtrain.cli.common import add_corpus_options, add_data_options, add_inference_options, data_paths, log, print_json
from lmtrain.config import CORPUS_KEYS
from lmtrain.errors import ConfigError
from lmtrain.eval.checkpoint_eval import EVAL_BATCH_TOKENS
from lmtrain.files import write_text_atomic

ABOUT = (
    "`lmtrain eval`: token, word and byte perplexity of a checkpoint on a split, with sliding windows; with --tasks, "
    "its accuracy on benchmark tasks (the CORE suite: HellaSwag, LAMBADA, ARC, PIQA, Winogrande, ...)."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="perplexity of a model on a split (a run, checkpoint, transformers folder or GGUF file)",
        description=ABOUT,
        epilog="A run folder means its best checkpoint (else its latest). No architecture flags are "
        "needed: the checkpoint describes the model.",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="MODEL",
        help="run folder (its best), checkpoint, transformers folder or GGUF file",
    )
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
        "--windows",
        type=int,
        metavar="N",
        help="score the windows train validates on instead: the first N of --context tokens from the split's start "
        "(0: every whole one), a run's validation loss at these weights (its --eval-windows); no word ppl or bits "
        "per byte",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"windows per forward pass (default: {EVAL_BATCH_TOKENS:,} tokens' worth, at least 1)",
    )
    add_inference_options(p)
    p.add_argument("--json", action="store_true", help="print the figures as a JSON object")
    add_task_options(p)
    p.add_argument(
        "--items-out",
        type=Path,
        metavar="FILE",
        help="with --tasks: write every item's outcome to FILE as JSON lines (task, record number, correct, choice)",
    )
    p.set_defaults(handler=run)


def add_task_options(parser: argparse.ArgumentParser) -> None:
    """--tasks, --tasks-dir, --max-per-task and --batch-tokens."""
    parser.add_argument(
        "--tasks",
        help="score benchmark tasks instead of perplexity: core (every CORE task present), chatcore (ARC and GSM8K "
        "asked through the model's chat template: docs/chat.md), task names (hellaswag,arc_easy), or a .toml file "
        "of your own tasks; comma-separated (docs/benchmarks.md)",
    )
    parser.add_argument(
        "--tasks-dir",
        type=Path,
        help="folder of task files in the CORE layout (default: $LMTRAIN_DATA_DIR/core, then the cache, then a "
        "download)",
    )
    parser.add_argument(
        "--max-per-task",
        type=int,
        metavar="N",
        help="score the first N items of each task in its shuffled order (default: every item)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        metavar="N",
        help="padded tokens per forward pass when scoring tasks (default 8,192 on the CPU, 65,536 on a GPU)",
    )


def run(args: argparse.Namespace) -> int:
    from lmtrain.eval.checkpoint_eval import EvalRequest, evaluate_checkpoint

    if args.tasks:
        return run_tasks(args)
    if args.items_out:
        raise ConfigError("--items-out needs --tasks (it lists the outcome of every task item)")

    request = EvalRequest(
        split=args.split,
        dataset=args.dataset,
        context=args.context,
        stride=args.stride,
        batch_size=args.batch_size,
        windows=args.windows,
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
    if report.word_ppl is not None:
        print(f"word ppl        {report.word_ppl:,.3f}")
        print(f"bits per byte   {report.bits_per_byte:.4f}")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    """`lmtrain eval RUN --tasks ...`: the table (or --json), recorded in the run's tasks.json."""
    from lmtrain.tasks.checkpoint_tasks import TasksRequest, evaluate_checkpoint_tasks
    from lmtrain.tasks.score import check_budget

    check_budget(args.batch_tokens)
    request = TasksRequest(
        tasks=args.tasks,
        tasks_dir=args.tasks_dir,
        max_per_task=args.max_per_task,
        device=args.device,
        dtype=args.dtype,
        weights=args.weights,
        batch_tokens=args.batch_tokens,
    )
    result = evaluate_checkpoint_tasks(args.checkpoint, request, data_paths(args), log=log)
    if result.recorded is None:  # not rank 0
        return 0
    report = result.report
    if args.items_out:
        write_text_atomic(args.items_out, "".join(json.dumps(row) + "\n" for row in report.item_rows()))
    if args.json:
        print_json(report.to_json() | {"checkpoint": str(result.checkpoint), "step": result.step})
        return 0
    print(f"checkpoint  {result.checkpoint} (step {result.step})")
    print(
        f"prompts     begin with {report.bos}"
        + (f"; at most {report.max_per_task} items per task" if report.max_per_task else "")
    )
    print(f"{'task':<34} {'accuracy':>9} {'centred':>9} {'items':>7} {'seconds':>8}")
    for t in report.tasks:
        print(f"{t.name:<34} {t.accuracy:>9.2%} {t.centred:>+9.4f} {t.items:>7,} {t.seconds:>8.1f}")
    if report.core is not None:
        print(f"{report.core_label:<34} {'':>9} {report.core:>+9.4f}")
    if report.chatcore is not None:
        print(f"{report.chatcore_label:<34} {'':>9} {report.chatcore:>+9.4f}")
    print(f"recorded    {result.recorded} ({report.seconds:.1f} s)")
    return 0
