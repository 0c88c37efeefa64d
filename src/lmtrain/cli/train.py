"""`lmtrain train`: train a preset on a dataset into a run folder, or resume one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from lmtrain.cli.common import add_data_options, add_dataclass_options, add_model_options, log_stdout, model_overrides
from lmtrain.config import LOCATION_KEYS, PATH_KEYS, DataConfig, TrainConfig
from lmtrain.errors import ConfigError

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
        "Exit codes: 0 done, 2 bad input, 3 training failed (non-finite values, out of memory), "
        "130/143 stopped by SIGINT/SIGTERM with a checkpoint.",
    )
    add_run_options(p)
    p.set_defaults(handler=run_train)


def _toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}") from None


def _resolve(value: Any, base: Path) -> str:
    """A path option: `~` expanded, then a relative path taken from `base`."""
    return str((base / Path(str(value)).expanduser()).resolve())


def gather_flags(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Flat keys from --config (paths relative to the file's folder) with the flags given on top, and --out."""
    flat: dict[str, Any] = {}
    if args.config:
        for key, value in _toml(args.config).items():
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
    from lmtrain.cli.common import data_paths
    from lmtrain.cli.doctor import preflight
    from lmtrain.train.data import load_training_data
    from lmtrain.train.observers import build_bus
    from lmtrain.train.resume import decide_launch
    from lmtrain.train.trainer import Trainer

    flat, out = gather_flags(args)
    launch = decide_launch(flat, out, args.resume.expanduser() if args.resume else None)
    paths = data_paths(launch.cfg.data)
    data = load_training_data(launch.cfg, paths, log=log_stdout)
    findings = preflight(launch, data)
    bus = build_bus(launch.cfg.train, launch.out, wandb_project=os.environ.get("WANDB_PROJECT", "lmtrain"))
    try:
        trainer = Trainer(
            launch.cfg, data, launch.out, bus, launch.restore, launch.changes, findings, cache_dir=paths.cache_dir
        )
        return trainer.run()
    finally:
        bus.close()
