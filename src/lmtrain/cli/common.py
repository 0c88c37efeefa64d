"""What subcommands share: the parser class, data and device options, a run's flags, model overrides, output helpers.

The one module of `cli/` that other `cli/` modules import.
"""

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

from lmtrain.config import CORPUS_KEYS, LOCATION_KEYS, PATH_KEYS, DataConfig, corpus_from, read_toml
from lmtrain.data.chat import CHATML_NAME
from lmtrain.data.datasets import ALIASES, DATASETS, DEFAULT_DATASET, DataPaths
from lmtrain.data.tokenizers import BUILTIN as BUILTIN_TOKENIZERS
from lmtrain.errors import ConfigError
from lmtrain.fields import Leaf, field_types, leaves
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import DEFAULT_ARCH, architectures, get_arch, model_keys
from lmtrain.train_config import DEVICES, Precision, TrainConfig, Weights


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


def add_corpus_options(parser: argparse.ArgumentParser, tokenizer: bool = True) -> None:
    """--text-field and the holdout flags (and --tokenizer), help from DataConfig; only the flags given are set."""
    keep = (*CORPUS_KEYS, "tokenizer") if tokenizer else CORPUS_KEYS
    exclude = tuple(k for k in field_types(DataConfig) if k not in keep)
    add_dataclass_options(parser, DataConfig, "corpus", exclude=exclude)


def corpus_config(args: argparse.Namespace) -> DataConfig:
    """A DataConfig of the corpus keys given on the command line (the others at their defaults)."""
    return corpus_from({k: getattr(args, k) for k in (*CORPUS_KEYS, "tokenizer") if hasattr(args, k)})


MODEL_DEST = "model__"
"""Prefix of argparse destinations holding model overrides."""


def add_dataclass_options(
    parser: argparse.ArgumentParser, cls: type, title: str, prefix: str = "", exclude: tuple[str, ...] = ()
) -> None:
    """One --key option per flat key of dataclass `cls` (a group per section), help from its field docs; only the
    options given are set."""
    groups: dict[str, Any] = {}
    for key, leaf in leaves(cls).items():
        if key in exclude:
            continue
        heading = f"{title}: {leaf.section}" if leaf.section else title
        if heading not in groups:
            groups[heading] = parser.add_argument_group(heading)
        add_leaf_option(groups[heading], leaf, prefix)


def add_leaf_option(group: Any, leaf: Leaf, prefix: str = "") -> None:
    """The --key option of one config field: a choice for a Literal, --key/--no-key for a bool, else a value."""
    flag = "--" + leaf.key.replace("_", "-")
    shown = prefix == "" and leaf.default is not None and not isinstance(leaf.default, bool)
    note = f" (default {leaf.default})" if shown else ""
    kwargs: dict[str, Any] = {"dest": prefix + leaf.key, "help": help_text(leaf.doc + note)}
    if prefix == "":
        kwargs["default"] = argparse.SUPPRESS
    if leaf.type is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if typing.get_origin(leaf.type) is typing.Literal:
        kwargs["choices"] = typing.get_args(leaf.type)
    else:
        base = next((a for a in typing.get_args(leaf.type) if a is not type(None)), leaf.type)
        names = {int: "INT", float: "FLOAT", str: "TEXT"}
        kwargs["metavar"] = "DIR" if leaf.key.endswith("_dir") else names.get(base, "X")
    group.add_argument(flag, **kwargs)


def add_arch_option(parser: argparse.ArgumentParser, keep_unset: bool = False) -> None:
    """--arch: the model family (default DEFAULT_ARCH); `keep_unset` leaves it out of the namespace when not given."""
    known = architectures()
    parser.add_argument(
        "--arch",
        choices=tuple(known),
        default=argparse.SUPPRESS if keep_unset else DEFAULT_ARCH,
        help=help_text(
            f"model architecture (default {DEFAULT_ARCH}): "
            + "; ".join(f"{a.name}: {a.summary}" for a in known.values())
        ),
    )


def shared_leaf(key: str, owners: list[str]) -> Leaf:
    """One option for a model key that several architectures have: its type where they agree (the union of the
    choices of Literals, else text, converted by each architecture's own config), its help naming each owner."""
    found = [leaves(get_arch(name).config)[key] for name in owners]
    types = {leaf.type for leaf in found}
    merged = found[0].type
    if len(types) > 1:
        literal = all(typing.get_origin(t) is typing.Literal for t in types)
        choices = dict.fromkeys(c for leaf in found for c in typing.get_args(leaf.type)) if literal else None
        merged = typing.Literal[tuple(choices)] if choices else str  # type: ignore[valid-type]
    docs = {leaf.doc for leaf in found}
    doc = found[0].doc if len(docs) == 1 else "; ".join(f"--arch {n}: {leaf.doc}" for n, leaf in zip(owners, found))
    return dataclasses.replace(found[0], type=merged, doc=doc)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """One --field-name option per model key of every architecture (e.g. --d-model 384, --mlp swiglu), one flag for a
    key several architectures share; only given ones override the preset."""
    add_dataclass_options(parser, ModelConfig, "model overrides (default: the preset's value)", prefix=MODEL_DEST)
    base = set(field_types(ModelConfig))
    groups: dict[tuple[str, ...], Any] = {}
    for key, owners in model_keys().items():
        if key in base:
            continue
        if tuple(owners) not in groups:
            title = f"model overrides for --arch {' or '.join(owners)}"
            groups[tuple(owners)] = parser.add_argument_group(title)
        add_leaf_option(groups[tuple(owners)], shared_leaf(key, owners), MODEL_DEST)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model fields given on the command line, as strings/bools still to be converted."""
    return {
        key[len(MODEL_DEST) :]: value
        for key, value in vars(args).items()
        if key.startswith(MODEL_DEST) and value is not None
    }


RUN_KEYS = ("preset", "arch", *field_types(DataConfig), *field_types(TrainConfig))
"""The flat keys of a run (besides the model's)."""


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags of a run, shared by `lmtrain train` and `lmtrain doctor`; only the flags given are set."""
    run = p.add_argument_group("run")
    run.add_argument("--config", type=Path, help="TOML file with the same keys as the flags (flags override it)")
    run.add_argument("--out", type=Path, help="run folder (default runs/PRESET-DATASET-TIME); must be new or empty")
    run.add_argument(
        "--resume", type=Path, metavar="RUN", help="continue the run in this folder from its latest checkpoint"
    )
    run.add_argument("--preset", default=argparse.SUPPRESS, help="model preset: micro, tiny, small (default), base")
    add_arch_option(run, keep_unset=True)
    add_data_options(p.add_argument_group("data"), keep_unset=True)
    add_dataclass_options(p, DataConfig, "data", exclude=("dataset", *LOCATION_KEYS))
    add_dataclass_options(p, TrainConfig, "training")
    add_model_options(p)


def _resolve(value: Any, base: Path) -> str:
    """A path option: `~` expanded, then a relative path taken from `base` (a tokenizer's or template's name stays a
    name)."""
    if str(value) in BUILTIN_TOKENIZERS or str(value) == CHATML_NAME:
        return str(value)
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


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype and --weights for commands that run a trained model."""
    add_device_option(parser)
    parser.add_argument(
        "--dtype",
        choices=typing.get_args(Precision),
        default="fp32",
        help="autocast precision (default fp32, the exact figure)",
    )
    add_weights_option(parser)


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """--weights: which weights of a checkpoint to use."""
    parser.add_argument(
        "--weights",
        choices=typing.get_args(Weights),
        default="auto",
        help="auto (the EMA weights where the run kept them with --ema, else the raw weights), ema or raw",
    )


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


def emit_result(result: dict, out: Path | None) -> int:
    """Print a benchmark result, with where it was measured, as JSON and, with --out, also write it to that file."""
    from lmtrain.bench import provenance

    result = result | {"provenance": provenance()}
    print_json(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def check_sampling(args: argparse.Namespace) -> None:
    """--max-new-tokens, --temperature, --top-k and --top-p of `generate` and `chat` (those a command has)."""
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens {args.max_new_tokens} must be at least 1")
    if args.temperature < 0:
        raise ConfigError(f"--temperature {args.temperature} must be >= 0 (0 is greedy)")
    top_k = getattr(args, "top_k", None)
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k {top_k} must be at least 1")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p {args.top_p} must be in (0, 1]")


def inference_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model on --device, its tokenizer, the device) of MODEL (`args.checkpoint`, its --weights): what `generate`
    and `chat` run."""
    from lmtrain.interop.open import open_model
    from lmtrain.runtime import select_device

    opened = open_model(args.checkpoint, weights=args.weights)
    device = select_device(args.device)
    return opened.model(device), opened.tokenizer(data_paths(args).tokenizer_search()), device
