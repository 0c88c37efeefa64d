"""`lmtrain doctor [the train flags]`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lmtrain.cli.common import add_run_options, data_paths, gather_flags, log, print_json
from lmtrain.errors import EXIT_DOCTOR_ERROR, ConfigError
from lmtrain.findings import Finding

if TYPE_CHECKING:  # the doctor's modules import torch; the CLI imports them only when it runs
    from lmtrain.config import RunConfig
    from lmtrain.doctor.lr_find import LRFind
    from lmtrain.train.data import TrainingData


ABOUT = """`lmtrain doctor [the train flags]`: what a run would do and what looks wrong, before it spends any compute.

Each finding is OK, WARN or ERROR with one sentence of why and a fix. The same checks run at the start of
`lmtrain train` (`--doctor warn`, the default, reports them; `--doctor strict` refuses to start on an ERROR).
Exit code 0, or 1 when there is an ERROR.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check a run's settings before training (takes the train flags)",
        description=ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(p)
    p.add_argument("--json", action="store_true", help='print {"findings": [{"level", "code", "message"}], ...}')
    lr = p.add_argument_group("LR range test")
    lr.add_argument(
        "--lr-find",
        action="store_true",
        help="also run a short range test (the LR rising geometrically) and suggest a peak --lr",
    )
    lr.add_argument("--lr-find-steps", type=int, default=100, help="steps of the range test (default 100)")
    lr.add_argument("--lr-min", type=float, default=1e-6, help="the range test's first LR (default 1e-6)")
    lr.add_argument("--lr-max", type=float, default=1.0, help="the range test's last LR (default 1)")
    lr.add_argument("--plot", type=Path, metavar="FILE.png", help="write the range test's loss-vs-LR plot here")
    p.set_defaults(handler=run)


def format_findings(findings: Sequence[Finding]) -> list[str]:
    """One line per finding: `LEVEL  code  message`."""
    width = max((len(f.code) for f in findings), default=0)
    return [f"{f.level:<5}  {f.code:<{width}}  {f.message}" for f in findings]


def run(args: argparse.Namespace) -> int:
    from lmtrain.doctor.examine import examine
    from lmtrain.train.benchmarks import load_run_tasks
    from lmtrain.train.data import load_training_data, tokenizer_opener
    from lmtrain.train.resume import decide_launch, new_run_config

    flat, _ = gather_flags(args)
    # a new run is only configured: the doctor writes nothing, so --out need not be new
    launch = decide_launch(flat, None, args.resume.expanduser()) if args.resume else None
    start = None
    if launch is None:
        cfg, start = new_run_config(flat, tokenizer_of=tokenizer_opener(data_paths))
    else:
        cfg = launch.cfg
    paths = data_paths(cfg.data)
    tasks = load_run_tasks(cfg.train.evaluation, paths, log=log)  # their scorings count in the time estimate
    data = load_training_data(cfg, paths, log=log)
    weights = start.weights if start is not None else None  # --init-from's model takes the trial step
    report = examine(cfg, data, start_step=launch.start_step if launch is not None else 0, tasks=tasks, weights=weights)
    found = _lr_find(args, cfg, data) if args.lr_find else None
    if args.json:
        print_json(report.to_dict() | ({"lr_find": found.to_dict()} if found else {}))
    else:
        for line in format_findings(report.findings):
            print(line)
        if found is not None:
            for line in lr_find_lines(found, cfg.train.optimizer.peak_lr):
                print(line)
    return EXIT_DOCTOR_ERROR if report.errors else 0


def _lr_find(args: argparse.Namespace, cfg: RunConfig, data: TrainingData) -> LRFind:
    """The range test on the run's device, with its plot when --plot is given."""
    from lmtrain.doctor.lr_find import lr_range_test, plot
    from lmtrain.runtime import configure_device, select_device, select_dtype

    if args.lr_find_steps < 5 or not 0 < args.lr_min < args.lr_max:
        raise ConfigError("--lr-find needs --lr-find-steps of at least 5 and 0 < --lr-min < --lr-max")
    if args.plot is not None and args.plot.suffix != ".png":
        raise ConfigError(f"--plot {args.plot}: give a .png file")
    device = select_device(cfg.train.device)
    configure_device(device)
    log(f"LR range test: {args.lr_find_steps} steps from {args.lr_min:g} to {args.lr_max:g} on {device}")
    found = lr_range_test(
        cfg,
        data,
        device=device,
        dtype=select_dtype(cfg.train.dtype, device),
        steps=args.lr_find_steps,
        lr_min=args.lr_min,
        lr_max=args.lr_max,
    )
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(found, args.plot, cfg.train.optimizer.peak_lr)
        log(f"LR range test plot: {args.plot}")
    return found


def lr_find_lines(found: LRFind, current: float) -> list[str]:
    """The range test in a few lines: the loss at every tenth of the LRs tried, and the suggestion."""
    every = max(1, len(found.lrs) // 10)
    lines = ["lr-find  lr          loss (smoothed)"]
    lines += [f"lr-find  {lr:<10.3g}  {s:.4f}" for lr, s in list(zip(found.lrs, found.smoothed))[::every]]
    end = "stopped when the loss diverged" if found.stopped_early else "reached --lr-max"
    lines.append(
        f"lr-find  suggested peak --lr {found.suggestion:.3g} (a tenth of the LR at the lowest loss; {end}); "
        f"configured --lr {current:.3g}"
    )
    return lines
