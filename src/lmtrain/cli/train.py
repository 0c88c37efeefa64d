"""`lmtrain train`: train a preset on a dataset into a run folder, or resume one."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtrain.cli.common import add_data_options, add_dataclass_options, add_model_options, log_stdout, model_overrides
from lmtrain.config import LOCATION_KEYS, PATH_KEYS, DataConfig, TrainConfig, read_toml

if TYPE_CHECKING:  # torch is imported only when a command runs
    from lmtrain.train.distributed import World
    from lmtrain.train.resume import Launch

RUN_KEYS = ("preset", *DataConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags of a run, shared by `lmtrain train` and `lmtrain doctor`; only the flags given are set."""
    run = p.add_argument_group("run")
    run.add_argument("--config", type=Path, help="TOML file with the same keys as the flags (flags override it)")
    run.add_argument("--out", type=Path, help="run folder (default runs/PRESET-DATASET-TIME); must be new or empty")
    run.add_argument(
        "--resume", type=Path, metavar="RUN", help="continue the run in this folder from its latest checkpoint"
    )
    run.add_argument("--preset", default=argparse.SUPPRESS, help="model preset: micro, tiny, small (default), base")
    add_data_options(p.add_argument_group("data"), keep_unset=True)
    add_dataclass_options(p, DataConfig, "data window", exclude=("dataset", *LOCATION_KEYS))
    add_dataclass_options(p, TrainConfig, "training")
    add_model_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (preparing the data first if needed)",
        description=__doc__,
        epilog="Every flag is also a key of --config FILE.toml (batch-size = 32 or batch_size = 32); flags win. "
        "Exit codes: 0 done, 2 bad input, 3 training failed (non-finite values, out of memory, another rank "
        "failed), 130/143 stopped by SIGINT/SIGTERM with a checkpoint. Several processes: "
        "torchrun --nproc_per_node N -m lmtrain train ... (DDP; --parallel fsdp shards the model).",
    )
    add_run_options(p)
    p.set_defaults(handler=run_train)


def _resolve(value: Any, base: Path) -> str:
    """A path option: `~` expanded, then a relative path taken from `base`."""
    return str((base / Path(str(value)).expanduser()).resolve())


def gather_flags(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Flat keys from --config (paths relative to the file's folder) with the flags given on top, and --out."""
    flat: dict[str, Any] = {}
    if args.config:
        for key, value in read_toml(args.config).items():
            name = key.replace("-", "_")
            flat[name] = _resolve(value, args.config.parent) if name in PATH_KEYS else value
    given = {k: v for k, v in vars(args).items() if k in RUN_KEYS}
    given.update(model_overrides(args))
    for key in PATH_KEYS:
        if given.get(key) is not None:
            given[key] = _resolve(given[key], Path.cwd())
    flat.update(given)
    toml_out = flat.pop("out", None)
    out = args.out.expanduser() if args.out else Path(toml_out) if toml_out else None
    return flat, out


def run_train(args: argparse.Namespace) -> int:
    from lmtrain.train.distributed import failure_guard, init_world, planned_world_size
    from lmtrain.train.resume import decide_launch

    flat, out = gather_flags(args)
    launch = decide_launch(flat, out, args.resume.expanduser() if args.resume else None)
    tc = launch.cfg.train
    tc.layout(planned_world_size())  # a batch that does not split is an error before anything is written
    world = init_world(tc.device, tc.parallel, tc.dist_timeout)
    try:
        with failure_guard(world):
            return _train(launch, world)
    finally:
        world.close()


PREPARE_TIMEOUT_S = 4 * 3600
"""How long the other ranks wait for rank 0 to download and prepare the data."""


def _train(launch: Launch, world: World) -> int:
    """Check the run against the world, prepare the data (rank 0 first), then train; rank 0 alone logs."""
    from lmtrain.cli.common import data_paths
    from lmtrain.cli.doctor import preflight
    from lmtrain.train.data import load_training_data
    from lmtrain.train.events import EventBus
    from lmtrain.train.observers import build_bus
    from lmtrain.train.trainer import Trainer

    out = Path(world.broadcast_object(str(launch.out)))  # rank 0's default folder name (a time stamp) for all
    launch = dataclasses.replace(launch, out=out)
    paths = data_paths(launch.cfg.data)
    log = log_stdout if world.is_main else lambda _message: None
    wait = max(PREPARE_TIMEOUT_S, launch.cfg.train.dist_timeout)
    data = world.in_turn(lambda: load_training_data(launch.cfg, paths, log=log), timeout_s=wait)
    findings = world.from_main(lambda: preflight(launch, data, world.world_size))
    if world.is_main:
        bus = build_bus(launch.cfg.train, launch.out, wandb_project=os.environ.get("WANDB_PROJECT", "lmtrain"))
    else:
        bus = EventBus()
    try:
        trainer = Trainer(
            launch.cfg, data, launch.out, bus, launch.restore, launch.changes, findings, paths.cache_dir, world
        )
        return trainer.run()
    finally:
        bus.close()
