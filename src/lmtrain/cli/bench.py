"""`lmtrain bench`: the parent of every benchmark (each in a module of its own, `cli/bench_*.py`); `ABOUT` is what
`--help` says the command does."""

from __future__ import annotations

import argparse

ABOUT = "`lmtrain bench`: throughput benchmarks, each measured as a ratio against a peer in the same run."


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`lmtrain bench`; returns its subcommands, to which `cli/__init__` adds each benchmark."""
    p = sub.add_parser("bench", help="run a benchmark", description=ABOUT)
    benches = p.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(p))
    benches.required = True
    return benches
