"""Run configuration: data and training dataclasses, validated on construction, built from flat keys.

A run is a preset plus overrides. Every key a flag sets (`--batch-size`) is also a key of `--config run.toml`
(`batch-size` or `batch_size`); each key belongs to exactly one of the model, data or training sections.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmtrain import __version__
from lmtrain.errors import ConfigError
from lmtrain.fields import field_types, from_mapping, to_jsonable
from lmtrain.model.config import GPTConfig
from lmtrain.presets import PRESET_LR, apply_overrides, get_preset

Schedule = Literal["cosine", "linear", "constant", "wsd"]
Device = Literal["auto", "cpu", "cuda", "mps"]
DEVICES: tuple[str, ...] = typing.get_args(Device)
"""The --device choices of every command."""
DType = Literal["auto", "fp32", "bf16", "fp16"]


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{name}={value} must be > 0")


def _non_negative(name: str, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ConfigError(f"{name}={value} must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    """What the model is trained on, and where the data is looked for."""

    dataset: str = "wikitext-103"
    """Dataset name (see `lmtrain prepare --help`)."""
    data_dir: str | None = None
    """Folder holding the split files; default $LMTRAIN_DATA_DIR, the cache, then a download."""
    cache_dir: str | None = None
    """Cache for downloads and prepared data; default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain."""
    no_download: bool = False
    """Never download; fail when the files are not local."""
    seq_len: int | None = None
    """Tokens per training window; at most the model's max_seq_len (default: max_seq_len)."""

    def __post_init__(self) -> None:
        _positive("seq_len", self.seq_len)


RUN_CONFIG = "config.json"
"""The resolved configuration in a run folder (`RunConfig.to_dict`)."""
LOCATION_KEYS = ("data_dir", "cache_dir", "no_download")
"""DataConfig keys that say where data is, not what it is (flags shared with prepare, eval and generate)."""
PATH_KEYS = ("data_dir", "cache_dir", "out")
"""Keys holding paths: `~` is expanded and, in a TOML file, relative paths start at the file's folder."""
SINKS = ("jsonl", "tensorboard", "wandb")
DEFAULT_LR = 3e-4
"""The AdamW LR of a TrainConfig built in code without one (a run takes its preset's, `PRESET_LR`)."""
WARMUP_SHARE = 0.05
"""Without --warmup: this share of the run's steps warm up, at most MAX_AUTO_WARMUP."""
MAX_AUTO_WARMUP = 1000
MUON_LR_FACTOR = 3.0
"""--muon-lr when not given: this times --lr."""
"""What --log may name."""


@dataclass(frozen=True)
class BatchLayout:
    """The global batch = micro-batch x accumulation steps x world size, in sequences."""

    global_batch: int
    world_size: int
    per_rank: int
    """Sequences each rank trains on per optimizer step."""
    micro: int
    """Sequences per forward/backward."""
    accumulation: int
    """Forward/backward passes per rank per optimizer step."""


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained: length, batch, optimizer, schedule, evaluation, checkpoints, hardware."""

    epochs: float | None = None
    """Passes over the training tokens (one epoch = every window once at the global batch size)."""
    max_steps: int | None = None
    """Optimizer steps in all (instead of --epochs); the LR schedule spans them."""
    stop_at: int | None = None
    """Stop after this optimizer step with a checkpoint, keeping the schedule of the full run (resume later)."""
    batch_size: int = 32
    """Sequences per optimizer step (the global batch)."""
    micro_batch_size: int | None = None
    """Sequences per forward/backward; gradients accumulate over batch_size/micro_batch_size (default: batch_size)."""
    lr: float | None = None
    """Peak learning rate of the AdamW groups (default: the preset's, as `lmtrain presets` lists it)."""
    min_lr: float | None = None
    """Learning rate at the end of the decay (default: lr/10)."""
    warmup: int | None = None
    """Optimizer steps of linear warmup; step s < warmup runs at lr*(s+1)/warmup; 0 starts at lr (default: 5% of
    the run, at most 1000)."""
    schedule: Schedule = "cosine"
    """Decay after warmup: cosine, linear, constant or wsd (warmup-stable-decay)."""
    decay_fraction: float = 0.2
    """wsd only: share of all steps spent decaying linearly to min_lr at the end."""
    optimizer: Literal["adamw", "muon"] = "muon"
    """muon: Muon for the matrices inside the blocks, AdamW for embeddings, biases and LayerNorms; or adamw."""
    muon_lr: float | None = None
    """With --optimizer muon: peak LR of the Muon matrices (default 3 x --lr; --lr stays the AdamW groups')."""
    ema: float | None = None
    """Keep an exponential moving average of the weights with this decay (e.g. 0.99); evaluation and `best` use it,
    checkpoints save it beside the raw weights (model_ema.safetensors)."""
    weight_decay: float = 0.1
    """Decoupled weight decay (AdamW and Muon), applied only to tensors with two or more dimensions."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    eval_every: int = 500
    """Evaluate on the validation split every N optimizer steps (and at the end); 0: only at the end."""
    eval_windows: int = 1000
    """Validation windows of seq_len tokens per evaluation, always the first ones of the split; 0: all of them."""
    save_every: int = 1000
    """Write a checkpoint every N optimizer steps (and at the end); 0: only at the end."""
    keep_last: int = 3
    """Checkpoints to keep (the best one is always kept as well)."""
    log_every: int = 10
    """Print and record a training line every N optimizer steps."""
    seed: int = 1337
    """Seed for initialisation, data order and dropout."""
    device: Device = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda or mps."""
    dtype: DType = "auto"
    """Autocast precision: auto (bf16 on CUDA that has it, else fp32), fp32, bf16 or fp16."""
    compile: bool = False
    """Compile the model with torch.compile."""
    allow_long_warmup: bool = False
    """Allow a warmup as long as the whole run."""
    sample_tokens: int = 40
    """Tokens of text to sample at the end of training (0: none)."""
    doctor: Literal["off", "warn", "strict"] = "warn"
    """Preflight checks at the start: off, warn (report and go on) or strict (refuse to start on an ERROR)."""
    on_nan: Literal["stop", "skip"] = "stop"
    """A non-finite loss or gradient norm: stop (keeping the last good checkpoint) or skip that optimizer step."""
    max_skipped_steps: int = 10
    """With --on-nan skip: stop once this many optimizer steps in a row were skipped."""
    log: str = "jsonl,tensorboard"
    """Comma list of metric sinks: jsonl (metrics.jsonl), tensorboard, wandb (needs the wandb package)."""
    progress: Literal["auto", "bar", "plain"] = "auto"
    """Console output: a progress bar (auto: when stderr is a terminal) or plain log lines."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: ddp (a full copy per rank) or fsdp (parameters, gradients and optimizer state sharded)."""
    dist_timeout: float = 600.0
    """Under torchrun: seconds a rank waits for the others before the run stops with the error of the rank that failed."""

    def __post_init__(self) -> None:
        if self.lr is None:  # a TrainConfig built in code; runs get their preset's LR from build_run_config
            object.__setattr__(self, "lr", DEFAULT_LR)
        if self.epochs is not None and self.max_steps is not None:
            raise ConfigError("give --epochs or --max-steps, not both")
        _positive("epochs", self.epochs)
        for name in (
            "max_steps",
            "stop_at",
            "batch_size",
            "micro_batch_size",
            "lr",
            "muon_lr",
            "log_every",
            "keep_last",
            "max_skipped_steps",
            "dist_timeout",
        ):
            _positive(name, getattr(self, name))
        for name in (
            "warmup",
            "weight_decay",
            "grad_clip",
            "eval_every",
            "eval_windows",
            "save_every",
            "sample_tokens",
        ):
            _non_negative(name, getattr(self, name))
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr={self.min_lr} must be between 0 and lr={self.lr}")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"micro_batch_size={self.micro_batch_size} does not divide batch_size={self.batch_size}; "
                f"choose a divisor so every optimizer step sees the same number of sequences"
            )
        if self.parallel == "fsdp" and self.dtype == "fp16":
            raise ConfigError("--parallel fsdp trains in fp32 or bf16; use --dtype bf16 (fp16 loss scaling is DDP's)")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema={self.ema} must be between 0 and 1 (e.g. 0.99; omit --ema for none)")
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"decay_fraction={self.decay_fraction} must be in (0, 1]")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        unknown = [s for s in self.sinks if s not in SINKS]
        if unknown or len(set(self.sinks)) != len(self.sinks):
            what = f"unknown sink {unknown[0]!r}" if unknown else "a sink named twice"
            raise ConfigError(f"log={self.log!r}: {what}; give a comma list of {', '.join(SINKS)}")

    @property
    def sinks(self) -> tuple[str, ...]:
        """The metric sinks --log names."""
        return tuple(s.strip() for s in self.log.split(",") if s.strip())

    @property
    def micro(self) -> int:
        """Sequences per forward/backward (in one process)."""
        return self.layout(1).micro

    @property
    def accumulation(self) -> int:
        """Forward/backward passes per optimizer step (in one process)."""
        return self.layout(1).accumulation

    def layout(self, world_size: int) -> BatchLayout:
        """How the global batch splits over `world_size` ranks and their micro-batches; a ConfigError if it does not."""
        if self.batch_size % world_size:
            raise ConfigError(
                f"batch_size={self.batch_size} (the global batch) is not divisible by the {world_size} ranks; choose a "
                f"multiple of {world_size} so every rank trains on the same number of sequences"
            )
        per_rank = self.batch_size // world_size
        micro = self.micro_batch_size or per_rank
        if per_rank % micro:
            raise ConfigError(
                f"micro_batch_size={micro} does not divide the {per_rank} sequences per rank (batch_size="
                f"{self.batch_size} over {world_size} ranks); choose a divisor of {per_rank}"
            )
        return BatchLayout(self.batch_size, world_size, per_rank, micro, per_rank // micro)

    @property
    def final_lr(self) -> float:
        """Learning rate the decay ends at."""
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def warmup_steps(self, total_steps: int) -> int:
        """--warmup, or without it 5% of the run's `total_steps` (at least 1, at most 1000)."""
        if self.warmup is not None:
            return self.warmup
        return min(MAX_AUTO_WARMUP, max(1, round(WARMUP_SHARE * total_steps)))

    @property
    def peak_muon_lr(self) -> float:
        """With --optimizer muon: the Muon matrices' peak LR."""
        return MUON_LR_FACTOR * self.lr if self.muon_lr is None else self.muon_lr


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run: the model, the data and the training."""

    preset: str
    model: GPTConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.seq_len is not None and self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"seq_len={self.data.seq_len} is longer than the model's max_seq_len={self.model.max_seq_len}; "
                f"lower --seq-len or raise --max-seq-len (inputs are never truncated)"
            )

    @property
    def seq_len(self) -> int:
        """Tokens per training window."""
        return self.data.seq_len or self.model.max_seq_len

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as saved in the run folder and in every checkpoint."""
        return {"lmtrain_version": __version__, **to_jsonable(self)}


SECTIONS: dict[str, type] = {"model": GPTConfig, "data": DataConfig, "train": TrainConfig}


def _section_of(key: str) -> str:
    """The section (model, data or train) a known flat key belongs to."""
    return next(name for name, cls in SECTIONS.items() if key in field_types(cls))


def normalise_keys(flat: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Flat keys with dashes turned into underscores; unknown keys are a ConfigError listing the known ones."""
    known = {"preset", *(k for cls in SECTIONS.values() for k in field_types(cls))}
    out = {}
    for key, value in flat.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown key {key!r} in {what}; known keys: {', '.join(sorted(known))}")
        out[name] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's keys; a missing or malformed file is a ConfigError naming it."""
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


def build_run_config(flat: Mapping[str, Any], default_preset: str = "small") -> RunConfig:
    """RunConfig from flat keys (flags and TOML merged): a preset, model overrides, data and training keys."""
    flat = normalise_keys(flat, "the run config")
    preset = str(flat.pop("preset", default_preset))
    parts: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in flat.items():
        section = _section_of(key)
        parts[section][key] = value
    model = apply_overrides(get_preset(preset), parts["model"])
    parts["train"].setdefault("lr", PRESET_LR[preset])
    return RunConfig(
        preset=preset,
        model=model,
        data=from_mapping(DataConfig, parts["data"], "data config"),
        train=from_mapping(TrainConfig, parts["train"], "training config"),
    )


def run_config_from_dict(saved: Mapping[str, Any]) -> RunConfig:
    """RunConfig from its saved JSON form (a run folder's or checkpoint's config.json)."""
    try:
        train = dict(saved["train"])
        if "eval_batches" in train:  # lmtrain 0.1 runs counted micro-batches of validation windows
            batches = train.pop("eval_batches")
            train["eval_windows"] = batches * (train.get("micro_batch_size") or train.get("batch_size", 32))
        return RunConfig(
            preset=str(saved["preset"]),
            model=from_mapping(GPTConfig, saved["model"], "saved model config"),
            data=from_mapping(DataConfig, saved["data"], "saved data config"),
            train=from_mapping(TrainConfig, train, "saved training config"),
        )
    except KeyError as exc:
        raise ConfigError(f"saved run config lacks the {exc.args[0]!r} section") from None
