"""`lmtrain report RUN` (report.html with plots) and `lmtrain compare RUN1 RUN2 ... --out F.png` (loss overlay)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN/report.html: loss, LR, gradient norm and throughput plots, config, doctor, warnings",
        description="Write an HTML report of a finished, running or failed run, with PNG plots beside it.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder")
    p.add_argument("--out", type=Path, help="the HTML file (default RUN/report.html; plots in NAME_plots/ beside it)")
    p.set_defaults(handler=run_report)
    c = sub.add_parser(
        "compare",
        help="overlay the loss of several runs against training tokens in one PNG",
        description="Plot training (lines) and validation (markers) loss of runs against training tokens.",
    )
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders")
    c.add_argument("--out", type=Path, required=True, help="the PNG to write")
    c.set_defaults(handler=run_compare)


def run_report(args: argparse.Namespace) -> int:
    from lmtrain.report import write_report

    out = write_report(args.run, args.out)
    print(f"report: {out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from lmtrain.report import write_compare

    out, runs = write_compare(args.runs, args.out)
    print(f"compare: {out} ({', '.join(r.name for r in runs)})")
    scored = [(r, max(r.tasks.items())) for r in runs if r.tasks]
    if scored:
        width = max(len(r.name) for r, _ in scored)
        print(f"{'run':<{width}}  {'step':>8}  {'CORE':>8}  {'ChatCORE':>8}  over")
        for run, (step, entry) in scored:
            core, chat = (f"{entry[m]:+.4f}" if entry.get(m) is not None else "-" for m in ("core", "chatcore"))
            over = ", ".join(entry[f"{m}_label"] for m in ("core", "chatcore") if entry.get(m) is not None)
            print(f"{run.name:<{width}}  {step:>8,}  {core:>8}  {chat:>8}  {over}")
    return 0
