"""Options shared by subcommands: data locations, model overrides, output helpers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from lmtrain.config import DEVICES
from lmtrain.data.datasets import ALIASES, DATASETS, DEFAULT_DATASET, DataPaths
from lmtrain.fields import field_docs, field_types
from lmtrain.model.config import GPTConfig


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: `PROG: error: MESSAGE (see PROG --help)`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """$LMTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/lmtrain, else ~/.cache/lmtrain."""
    if env.get("LMTRAIN_CACHE_DIR"):
        return Path(env["LMTRAIN_CACHE_DIR"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "lmtrain"


def add_data_options(parser: argparse.ArgumentParser, dataset: bool = True, keep_unset: bool = False) -> None:
    """--dataset, --data-dir, --cache-dir, --no-download; with `keep_unset`, flags not given stay out of the args."""
    unset = {"default": argparse.SUPPRESS} if keep_unset else {}
    if dataset:
        parser.add_argument(
            "--dataset",
            default=argparse.SUPPRESS if keep_unset else DEFAULT_DATASET,
            help=help_text(dataset_help()),
        )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding the split files under their official names (wiki.train.raw, ...); "
        "default: $LMTRAIN_DATA_DIR/<official folder>, then the cache, then a download",
        **unset,
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache for downloads and prepared data (default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain)",
        **unset,
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never download; fail if the files are not local", **unset
    )


def dataset_help() -> str:
    """The --dataset help: every registered dataset with its description, the aliases and the default."""
    names = "; ".join(f"{name}: {spec.description}" for name, spec in DATASETS.items())
    aliases = ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())
    return f"{names} ({aliases}; default {DEFAULT_DATASET})"


def data_paths(options: Any, env: Mapping[str, str] | None = None) -> DataPaths:
    """DataPaths from `data_dir`, `cache_dir` and `no_download` (a command's args or a run's DataConfig) and
    $LMTRAIN_DATA_DIR/$LMTRAIN_CACHE_DIR."""
    env = os.environ if env is None else env
    return DataPaths(
        data_dir=Path(options.data_dir).expanduser() if options.data_dir else None,
        env_dir=Path(env["LMTRAIN_DATA_DIR"]).expanduser() if env.get("LMTRAIN_DATA_DIR") else None,
        cache_dir=Path(options.cache_dir).expanduser() if options.cache_dir else default_cache_dir(env),
        download=not options.no_download,
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device, with the choices every command shares."""
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto (cuda, mps, cpu), cpu, cuda or mps (default auto)"
    )


def help_text(text: str) -> str:
    """`text` as argparse help: argparse %-formats help strings, so a literal % is written %%."""
    return text.replace("%", "%%")


MODEL_DEST = "model__"
"""Prefix of argparse destinations holding model overrides."""


def add_dataclass_options(
    parser: argparse.ArgumentParser, cls: type, title: str, prefix: str = "", exclude: tuple[str, ...] = ()
) -> None:
    """One --field-name option per field of dataclass `cls`, help from its field docs; only given ones are set."""
    group = parser.add_argument_group(title)
    docs = field_docs(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for name, tp in field_types(cls).items():
        if name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        default = defaults[name]
        note = f" (default {default})" if prefix == "" and default is not None and not isinstance(default, bool) else ""
        kwargs: dict[str, Any] = {"dest": prefix + name, "help": help_text((docs.get(name) or "") + note)}
        if prefix == "":
            kwargs["default"] = argparse.SUPPRESS
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = typing.get_args(tp)
        else:
            base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
            kwargs["metavar"] = (
                "DIR" if name.endswith("_dir") else {int: "INT", float: "FLOAT", str: "TEXT"}.get(base, "X")
            )
        group.add_argument(flag, **kwargs)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """One --field-name option per GPTConfig field (e.g. --d-model 384); only given ones override the preset."""
    add_dataclass_options(parser, GPTConfig, "model overrides (default: the preset's value)", prefix=MODEL_DEST)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model fields given on the command line, as strings/bools still to be converted."""
    return {
        key[len(MODEL_DEST) :]: value
        for key, value in vars(args).items()
        if key.startswith(MODEL_DEST) and value is not None
    }


def print_json(obj: Any) -> None:
    """Write `obj` as indented JSON to stdout."""
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def log(message: str) -> None:
    """Progress message on stderr (stdout stays clean for --json)."""
    print(message, file=sys.stderr, flush=True)


def log_stdout(message: str) -> None:
    """Progress message on stdout, flushed (training logs)."""
    print(message, flush=True)
