"""`lmtrain train`: train a preset on a dataset into a run folder, or resume one."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lmtrain.cli.common import (
    add_dataclass_options,
    add_model_options,
    data_paths,
    log_stdout,
    model_overrides,
)
from lmtrain.config import DataConfig, TrainConfig, build_run_config, resume_config, run_config_from_dict
from lmtrain.errors import ConfigError

RUN_KEYS = ("preset", *DataConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (preparing the data first if needed)",
        description=__doc__,
        epilog="Every flag is also a key of --config FILE.toml (batch-size = 32 or batch_size = 32); flags win.",
    )
    run = p.add_argument_group("run")
    run.add_argument("--config", type=Path, help="TOML file with the same keys as the flags (flags override it)")
    run.add_argument("--out", type=Path, help="run folder (default runs/PRESET-DATASET-TIME); must be new or empty")
    run.add_argument(
        "--resume", type=Path, metavar="RUN", help="continue the run in this folder from its latest checkpoint"
    )
    run.add_argument("--preset", default=argparse.SUPPRESS, help="model preset: micro, tiny, small (default), base")
    add_dataclass_options(p, DataConfig, "data")
    p.add_argument("--cache-dir", type=Path, help="cache for downloads and prepared data (default ~/.cache/lmtrain)")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is not local")
    add_dataclass_options(p, TrainConfig, "training")
    add_model_options(p)
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


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Flat keys the command line set (defaults of these flags are suppressed)."""
    flat = {k: v for k, v in vars(args).items() if k in RUN_KEYS}
    flat.update(model_overrides(args))
    if flat.get("data_dir") is not None:
        flat["data_dir"] = str(Path(flat["data_dir"]).expanduser().resolve())
    return flat


def run_train(args: argparse.Namespace) -> int:
    from lmtrain.train.trainer import RUN_CONFIG, Trainer, check_run_dir

    flat = _toml(args.config) if args.config else {}
    toml_out = flat.pop("out", None)
    if "data_dir" in flat or "data-dir" in flat:
        key = "data_dir" if "data_dir" in flat else "data-dir"
        flat[key] = str((args.config.parent / str(flat[key])).expanduser().resolve())
    flat.update(_given(args))
    if args.resume:
        out = args.resume
        if args.out and args.out.resolve() != out.resolve():
            raise ConfigError(f"--out {args.out} and --resume {out} name different folders; give only --resume")
        check_run_dir(out, resume=True)
        try:
            saved = run_config_from_dict(json.loads((out / RUN_CONFIG).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{out / RUN_CONFIG} is unreadable ({exc})") from None
        cfg, changes = resume_config(saved, flat)
        for change in changes:
            log_stdout(f"resume: {change}")
    else:
        cfg = build_run_config(flat)
        out = args.out or (Path(toml_out) if toml_out else None)
        if out is None:
            out = Path("runs") / f"{cfg.preset}-{cfg.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_run_dir(out, resume=False)
    args.data_dir = Path(cfg.data.data_dir) if cfg.data.data_dir else None
    trainer = Trainer(cfg, out, data_paths(args), resume=bool(args.resume), log=log_stdout)
    return trainer.run()
