"""`lmtrain train`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lmtrain.cli.common import add_run_options, data_paths, gather_flags, log_stdout

if TYPE_CHECKING:  # torch is imported only when a command runs
    from lmtrain.distributed.world import World
    from lmtrain.train.resume import Launch


ABOUT = "`lmtrain train`: train a preset on a dataset into a run folder, or resume one."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (preparing the data first if needed)",
        description=ABOUT,
        epilog="Every flag is also a key of --config FILE.toml (batch-size = 32 or batch_size = 32); flags win. "
        "Exit codes: 0 done, 2 bad input, 3 training failed (non-finite values, out of memory, another rank "
        "failed), 130/143 stopped by SIGINT/SIGTERM with a checkpoint. Several processes: "
        "torchrun --nproc_per_node N -m lmtrain train ... (DDP; --parallel fsdp shards the model).",
    )
    add_run_options(p)
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from lmtrain.distributed.world import failure_guard, init_world, planned_world_size
    from lmtrain.train.data import tokenizer_opener
    from lmtrain.train.resume import decide_launch

    flat, out = gather_flags(args)
    resume = args.resume.expanduser() if args.resume else None
    launch = decide_launch(flat, out, resume, tokenizer_of=tokenizer_opener(data_paths))
    tc = launch.cfg.train
    tc.layout(planned_world_size())  # a batch that does not split is an error before anything is written
    world = init_world(tc.device, tc.distributed.parallel, tc.distributed.timeout)
    failed = True
    try:
        with failure_guard(world):
            code = _train(launch, world)
        failed = False
        return code
    finally:
        world.close(failed=failed)


PREPARE_TIMEOUT_S = 4 * 3600
"""How long the other ranks wait for rank 0 to download and prepare the data."""


def _train(launch: Launch, world: World) -> int:
    """Check the run against the world, prepare the data (rank 0 first), then train; rank 0 alone logs."""
    from lmtrain.doctor.examine import preflight
    from lmtrain.train.benchmarks import load_run_tasks
    from lmtrain.train.data import load_training_data
    from lmtrain.train.events import EventBus
    from lmtrain.train.observers import build_bus
    from lmtrain.train.trainer import Trainer

    out = Path(world.broadcast_object(str(launch.out)))  # rank 0's default folder name (a time stamp) for all
    launch = dataclasses.replace(launch, out=out)
    paths = data_paths(launch.cfg.data)
    log = log_stdout if world.is_main else lambda _message: None
    wait = max(PREPARE_TIMEOUT_S, launch.cfg.train.distributed.timeout)
    tasks = world.in_turn(lambda: load_run_tasks(launch.cfg.train.evaluation, paths, log=log), timeout_s=wait)
    data = world.in_turn(lambda: load_training_data(launch.cfg, paths, log=log), timeout_s=wait)
    start = launch.start.weights if launch.start is not None else None  # --init-from's model takes the trial step
    findings = world.from_main(
        lambda: preflight(
            launch.cfg, data, start_step=launch.start_step, world_size=world.world_size, tasks=tasks, weights=start
        )
    )
    if world.is_main:
        bus = build_bus(launch.cfg.train, launch.out, wandb_project=os.environ.get("WANDB_PROJECT", "lmtrain"))
    else:
        bus = EventBus()
    try:
        trainer = Trainer(
            cfg=launch.cfg,
            data=data,
            out=launch.out,
            bus=bus,
            restore=launch.restore,
            weights=launch.initial_weights,
            changes=launch.changes,
            findings=findings,
            cache_dir=paths.cache_dir,
            world=world,
            tasks=tasks,
        )
        return trainer.run()
    finally:
        bus.close()
