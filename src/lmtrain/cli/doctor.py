"""`lmtrain doctor [the train flags]`: what a run would do and what looks wrong, before it spends any compute.

Each finding is OK, WARN or ERROR with one sentence of why and a fix. The same checks run at the start of
`lmtrain train` (`--doctor warn`, the default, reports them; `--doctor strict` refuses to start on an ERROR).
Exit code 0, or 1 when there is an ERROR.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmtrain.cli.common import log, print_json
from lmtrain.cli.train import add_run_options, gather_flags
from lmtrain.errors import EXIT_DOCTOR_ERROR, ConfigError

if TYPE_CHECKING:  # the doctor's modules import torch; the CLI imports them only when it runs
    from lmtrain.doctor.rules import Finding
    from lmtrain.train.data import TrainingData
    from lmtrain.train.resume import Launch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check a run's settings before training (takes the train flags)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(p)
    p.add_argument("--json", action="store_true", help='print {"findings": [{"level", "code", "message"}], ...}')
    p.set_defaults(handler=run)


def format_findings(findings: Sequence[Finding]) -> list[str]:
    """One line per finding: `LEVEL  code  message`."""
    width = max((len(f.code) for f in findings), default=0)
    return [f"{f.level:<5}  {f.code:<{width}}  {f.message}" for f in findings]


def preflight(launch: Launch, data: TrainingData, world_size: int = 1) -> tuple[Finding, ...]:
    """The doctor at the start of `lmtrain train` (of `world_size` processes): its findings, or a ConfigError under
    --doctor strict."""
    mode = launch.cfg.train.doctor
    if mode == "off":
        return ()
    from lmtrain.doctor.examine import examine

    report = examine(launch.cfg, data, start_step=launch.start_step, world_size=world_size)
    if mode == "strict" and report.errors:
        first = report.errors[0]
        raise ConfigError(
            f"the doctor found {len(report.errors)} ERROR(s), so --doctor strict does not start the run: "
            f"[{first.code}] {first.message}"
        )
    return tuple(report.findings)


def run(args: argparse.Namespace) -> int:
    from lmtrain.cli.common import data_paths
    from lmtrain.config import build_run_config
    from lmtrain.doctor.examine import examine
    from lmtrain.train.data import load_training_data
    from lmtrain.train.resume import decide_launch

    flat, _ = gather_flags(args)
    # a new run is only configured: the doctor writes nothing, so --out need not be new
    launch = decide_launch(flat, None, args.resume.expanduser()) if args.resume else None
    cfg = launch.cfg if launch is not None else build_run_config(flat)
    data = load_training_data(cfg, data_paths(cfg.data), log=log)
    report = examine(cfg, data, start_step=launch.start_step if launch is not None else 0)
    if args.json:
        print_json(report.to_dict())
    else:
        for line in format_findings(report.findings):
            print(line)
    return EXIT_DOCTOR_ERROR if report.errors else 0
