"""The `lmtrain` command: subcommands, one-line errors with exit code 2, no tracebacks for user errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lmtrain import __version__
from lmtrain.cli import (
    bench,
    bench_generate,
    bench_peak,
    bench_prepare,
    bench_recipe,
    bench_tasks,
    bench_train,
    chat,
    doctor,
    evaluate,
    generate,
    interchange,
    prepare,
    presets,
    report,
    tokenizer,
    train,
)
from lmtrain.cli.common import Parser
from lmtrain.errors import LmtrainError

COMMANDS = (presets, prepare, tokenizer, doctor, train, evaluate, generate, chat, report, interchange, bench)
BENCHES = (bench_prepare, bench_generate, bench_train, bench_recipe, bench_peak, bench_tasks)
"""`lmtrain bench`'s benchmarks, one module each."""


def build_parser() -> Parser:
    """The argument parser with every subcommand registered."""
    parser = Parser(prog="lmtrain", description="Train, evaluate and sample GPT-style language models.")
    parser.add_argument("--version", action="version", version=f"lmtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        added = command.register(sub)
        if command is bench:
            for benchmark in BENCHES:
                benchmark.register_bench(added)
    parser.set_defaults(lmtrain_main=main)  # for commands that run other commands (bench recipe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors print one line `lmtrain: error: ...` and return their exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except LmtrainError as exc:
        print(f"lmtrain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lmtrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
