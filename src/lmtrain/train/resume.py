"""Whether a run starts or continues, decided in one place: the run folder, the resolved config, what to restore."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtrain import checkpoint as ckpt
from lmtrain.config import (
    RUN_CONFIG,
    SECTIONS,
    DataConfig,
    RunConfig,
    build_run_config,
    normalise_keys,
    run_config_from_dict,
    section_of,
)
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.fields import coerce, field_types, from_flat
from lmtrain.files import new_or_empty
from lmtrain.presets import apply_overrides
from lmtrain.train.init_from import Start, fit_vocabulary, open_start, start_config
from lmtrain.train_config import TrainConfig

DATA_STREAM_KEYS = (
    "dataset",
    "seq_len",
    "batch_size",
    "seed",
    "tokenizer",
    "text_field",
    "valid_docs",
    "test_docs",
    "valid_fraction",
    "test_fraction",
    "split_seed",
)
"""Keys that fix which tokens each step sees; a resumed run must keep them."""
EVAL_KEYS = ("eval_windows",)
"""Keys that fix the validation windows `best` is chosen on; a resumed run must keep them."""
OPTIMIZER_KEYS = ("optimizer",)
"""Keys whose state the checkpoint holds in a form only that choice can load."""


def resume_config(saved: RunConfig, flat: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
    """The saved run with the given flat keys applied, and a line for each change.

    Model keys and the keys that fix the data stream must match the saved run: changing them would not
    continue the same run, so doing so is a ConfigError naming the key.
    """
    flat = normalise_keys(flat, "the resumed run's flags")
    changes, model_changes = [], {}
    sections = saved.flat()
    for key, value in flat.items():
        if key == "preset":
            if value != saved.preset:
                raise ConfigError(f"resuming with --preset {value}, but the run was trained as {saved.preset}")
            continue
        if key == "arch":
            if value != saved.model.arch:
                raise ConfigError(f"resuming with --arch {value}, but the run was trained as --arch {saved.model.arch}")
            continue
        section = section_of(key)
        if section == "model":
            model_changes[key] = value
            continue
        old = sections[section][key]
        new = coerce(value, field_types(SECTIONS[section])[key], key)
        if new == old:
            continue
        if key in DATA_STREAM_KEYS:
            also = (
                " (batch_size is the global batch: resume on any number of ranks with the same value, and each "
                "rank's share changes)"
                if key == "batch_size"
                else ""
            )
            raise ConfigError(
                f"resuming with {key}={new}, but the run used {key}={old}; a resumed run keeps its data stream{also}"
            )
        if key in EVAL_KEYS:
            raise ConfigError(
                f"resuming with {key}={new}, but the run used {key}={old}; a resumed run keeps its validation "
                f"windows so that `best` compares losses over the same tokens"
            )
        if key in OPTIMIZER_KEYS:
            raise ConfigError(
                f"resuming with {key}={new}, but the run used {key}={old}; its checkpoint holds {old}'s state, "
                f"so a resumed run keeps its optimizer"
            )
        sections[section][key] = new
        changes.append(f"{key}: {old} -> {new}")
    if model_changes:
        wanted = apply_overrides(saved.model, model_changes)
        if wanted != saved.model:
            diff = next(k for k in sections["model"] if getattr(wanted, k) != getattr(saved.model, k))
            raise ConfigError(
                f"resuming with a conflicting model config: {diff}={getattr(wanted, diff)}, "
                f"but the checkpoint has {diff}={getattr(saved.model, diff)}"
            )
    if "stop_at" not in flat:
        sections["train"]["stop_at"] = None  # a stop point belongs to one invocation, not to the run
    if "epochs" in flat and "max_steps" not in flat:
        sections["train"]["max_steps"] = None
    if "max_steps" in flat and "epochs" not in flat:
        sections["train"]["epochs"] = None
    resumed = RunConfig(
        preset=saved.preset,
        model=saved.model,
        data=from_flat(DataConfig, sections["data"], "the resumed run's data config"),
        train=from_flat(TrainConfig, sections["train"], "the resumed run's training config"),
        origin=saved.origin,
    )
    return resumed, changes


@dataclass(frozen=True)
class Restore:
    """A checkpoint to continue from: its folder, config.json, weights and trainer state."""

    checkpoint: Path
    config: dict[str, Any]
    weights: dict[str, Any]
    state: dict[str, Any]
    ema: dict[str, Any] | None = None
    """The averaged weights, when the run kept them (--ema)."""

    @property
    def step(self) -> int:
        """Optimizer steps the checkpoint has taken."""
        return int(self.state["step"])


@dataclass(frozen=True)
class Launch:
    """What `lmtrain train` is about to do: the resolved config, the run folder, changes on resume, the restore."""

    cfg: RunConfig
    out: Path
    changes: tuple[str, ...] = ()
    restore: Restore | None = None
    start: Start | None = None
    """The trained model a new run starts from (--init-from)."""

    @property
    def initial_weights(self) -> dict[str, Any] | None:
        """The weights loaded before the first step: the restored checkpoint's, else --init-from's, else None."""
        if self.restore is not None:
            return self.restore.weights
        return self.start.weights if self.start is not None else None

    @property
    def start_step(self) -> int:
        """Optimizer steps already taken: the restored checkpoint's, else 0."""
        return self.restore.step if self.restore is not None else 0


def check_run_dir(out: Path, resume: bool) -> None:
    """A new run needs an empty or new folder; a resumed one needs a run folder with a checkpoint."""
    if resume:
        if not (out / RUN_CONFIG).is_file():
            raise CheckpointError(f"--resume {out}: no run there ({out / RUN_CONFIG} is missing)")
        return
    if new_or_empty(out):
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    what = "another run" if (out / RUN_CONFIG).exists() or (out / ckpt.CHECKPOINTS).exists() else "files"
    raise ConfigError(f"--out {out} already holds {what}; continue it with --resume {out} or choose another --out")


def _init_from(flat: Mapping[str, Any]) -> Any:
    """The --init-from of flat keys (a TOML file may spell it init-from), or None."""
    return flat.get("init_from", flat.get("init-from"))


def new_run_config(
    flat: Mapping[str, Any], tokenizer_of: Callable[[DataConfig], Tokenizer] | None = None
) -> tuple[RunConfig, Start | None]:
    """A new run's config from flat keys, and the trained model it starts from where --init-from names one; a new
    model's vocabulary is its tokenizer's (`tokenizer_of` opens it) unless vocab_size is given."""
    init_from = _init_from(flat)
    if init_from is None:
        vocab = (lambda data: tokenizer_of(data).vocab_size) if tokenizer_of is not None else None
        return build_run_config(flat, tokenizer_vocab=vocab), None
    if tokenizer_of is None:
        raise ValueError("a run from --init-from needs tokenizer_of to check its --tokenizer")
    start = open_start(Path(str(init_from)))
    cfg = start_config(flat, start, tokenizer_of)
    start, cfg = fit_vocabulary(start, cfg, tokenizer_of)
    return cfg, start


def decide_launch(
    flat: Mapping[str, Any],
    out: Path | None,
    resume: Path | None,
    tokenizer_of: Callable[[DataConfig], Tokenizer] | None = None,
) -> Launch:
    """The run to start from flat keys (flags and TOML merged, --init-from's model or a preset's), or the run in
    `resume` to continue; `tokenizer_of` opens a data config's tokenizer."""
    if resume is None:
        cfg, start = new_run_config(flat, tokenizer_of=tokenizer_of)
        out = out or Path("runs") / f"{cfg.preset}-{cfg.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_run_dir(out, resume=False)
        return Launch(cfg, out, start=start)
    if _init_from(flat) is not None:
        raise ConfigError(
            f"--init-from starts a new run and --resume {resume} continues one; give one of them (a resumed run "
            f"keeps the weights of its own checkpoint)"
        )
    if out is not None and out.resolve() != resume.resolve():
        raise ConfigError(f"--out {out} and --resume {resume} name different folders; give only --resume")
    check_run_dir(resume, resume=True)
    try:
        saved = run_config_from_dict(json.loads((resume / RUN_CONFIG).read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{resume / RUN_CONFIG} is unreadable ({exc})") from None
    cfg, changes = resume_config(saved, flat)
    found = ckpt.resolve_checkpoint(resume, "latest")
    config = ckpt.load_checkpoint_config(found)
    if ckpt.model_config_of(config, found) != cfg.model:
        raise CheckpointError(f"{found} holds a different model than {resume / RUN_CONFIG} describes")
    ema = ckpt.load_weights(found, "ema") if (found / ckpt.EMA_FILE).is_file() else None
    restore = Restore(found, config, ckpt.load_weights(found), ckpt.load_trainer_state(found), ema)
    return Launch(cfg, resume, tuple(changes), restore)


def check_restore(restore: Restore, sources: Mapping[str, Mapping[str, Any]], eval_windows: int) -> None:
    """The checkpoint must have seen the same training data and be scored on the same validation windows."""
    data = restore.state.get("data", {})
    for split in ("train", "valid"):
        saved = data.get(f"{split}_sha256")
        if saved is not None and saved != sources[split]["sha256"]:
            raise CheckpointError(
                f"the {split} data differs from the data {restore.checkpoint} was trained on; resume with the same files"
            )
    saved_windows = data.get("eval_windows")
    if saved_windows is not None and saved_windows != eval_windows:
        raise CheckpointError(
            f"{restore.checkpoint} chose `best` on {saved_windows} validation windows, this run would use "
            f"{eval_windows}; resume with the same --eval-windows and --seq-len"
        )
