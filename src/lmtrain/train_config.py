"""How a model is trained: `TrainConfig`, in sections (optimizer, schedule, evaluation, checkpoints, logging, health,
distributed), each validated on construction.

Users never type the sections: every field has one flat key, the flag and TOML key (`--eval-every`, `eval-every = 500`),
which `fields.from_flat` routes to its section. A field whose name inside its section differs from its key says so
in its metadata (`every` in `EvalConfig` is `eval_every`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from lmtrain.defaults import FALLBACK_LR, MAX_AUTO_WARMUP, MIN_LR_DIVISOR, MUON_LR_FACTOR, WARMUP_SHARE
from lmtrain.errors import ConfigError
from lmtrain.fields import option

Schedule = Literal["cosine", "linear", "constant", "wsd"]
Device = Literal["auto", "cpu", "cuda", "mps"]
DEVICES: tuple[str, ...] = typing.get_args(Device)
"""The --device choices of every command."""
Precision = Literal["fp32", "bf16", "fp16"]
"""The precision of a command that runs a trained model (--dtype of eval and generate)."""
DType = Literal["auto", Precision]
"""--dtype of train and bench: a precision, or auto (bf16 on CUDA that has it, else fp32)."""
Optimizer = Literal["adamw", "muon"]
Parallel = Literal["ddp", "fsdp"]
Weights = Literal["auto", "ema", "raw"]
"""--weights of eval, generate and export: auto (the EMA where the checkpoint has it, else the raw weights), ema or raw."""
SINKS = ("jsonl", "tensorboard", "wandb")
"""What --log may name."""


def positive(name: str, value: float | None) -> None:
    """A ConfigError unless `value` is None or > 0."""
    if value is not None and not value > 0:
        raise ConfigError(f"{name}={value} must be > 0")


def non_negative(name: str, value: float | None) -> None:
    """A ConfigError unless `value` is None or >= 0."""
    if value is not None and not value >= 0:
        raise ConfigError(f"{name}={value} must be >= 0")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """The optimizer and what it clips and averages."""

    name: Optimizer = option(
        "muon",
        "muon: Muon for the matrices inside the blocks, AdamW for embeddings, biases and LayerNorms; or adamw.",
        key="optimizer",
    )
    lr: float | None = option(
        None,
        "Peak learning rate of the AdamW groups (default: the preset's, as `lmtrain presets` lists it).",
    )
    muon_lr: float | None = option(
        None,
        "With --optimizer muon: peak LR of the Muon matrices (default 3 x --lr; --lr stays the AdamW groups').",
    )
    weight_decay: float = option(
        0.1,
        "Decoupled weight decay (AdamW and Muon), applied only to tensors with two or more dimensions.",
    )
    beta1: float = option(0.9, "AdamW beta1.")
    beta2: float = option(0.95, "AdamW beta2.")
    grad_clip: float = option(1.0, "Clip the global gradient norm to this value; 0 disables clipping.")
    ema: float | None = option(
        None,
        "Keep an exponential moving average of the weights with this decay (e.g. 0.99); evaluation and `best` use "
        "it, checkpoints save it beside the raw weights (model_ema.safetensors).",
    )

    def __post_init__(self) -> None:
        if self.lr is None:  # a config built in code; runs get their preset's LR from build_run_config
            object.__setattr__(self, "lr", FALLBACK_LR)
        positive("lr", self.lr)
        positive("muon_lr", self.muon_lr)
        non_negative("weight_decay", self.weight_decay)
        non_negative("grad_clip", self.grad_clip)
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema={self.ema} must be between 0 and 1 (e.g. 0.99; omit --ema for none)")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")

    @property
    def peak_lr(self) -> float:
        """The AdamW groups' peak LR (--lr, resolved)."""
        assert self.lr is not None  # resolved in __post_init__
        return self.lr

    @property
    def peak_muon_lr(self) -> float:
        """With --optimizer muon: the Muon matrices' peak LR."""
        return MUON_LR_FACTOR * self.peak_lr if self.muon_lr is None else self.muon_lr


@dataclass(frozen=True, kw_only=True)
class LRScheduleConfig:
    """The learning rate over the run (`train/schedule.py` computes it)."""

    kind: Schedule = option(
        "cosine",
        "Decay after warmup: cosine, linear, constant or wsd (warmup-stable-decay).",
        key="schedule",
    )
    warmup: int | None = option(
        None,
        "Optimizer steps of linear warmup; step s < warmup runs at lr*(s+1)/warmup; 0 starts at lr (default: 5% of "
        "the run, at most 1000).",
    )
    min_lr: float | None = option(None, "Learning rate at the end of the decay (default: lr/10).")
    decay_fraction: float = option(0.2, "wsd only: share of all steps spent decaying linearly to min_lr at the end.")
    allow_long_warmup: bool = option(False, "Allow a warmup as long as the whole run.")

    def __post_init__(self) -> None:
        non_negative("warmup", self.warmup)
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"decay_fraction={self.decay_fraction} must be in (0, 1]")

    def warmup_steps(self, total_steps: int) -> int:
        """--warmup, or without it 5% of the run's `total_steps` (at least 1, at most 1000)."""
        if self.warmup is not None:
            return self.warmup
        return min(MAX_AUTO_WARMUP, max(1, round(WARMUP_SHARE * total_steps)))


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """When the validation loss is measured, and on which windows."""

    every: int = option(
        500,
        "Evaluate on the validation split every N optimizer steps (and at the end); 0: only at the end.",
        key="eval_every",
    )
    windows: int = option(
        1000,
        "Validation windows of seq_len tokens per evaluation, always the first ones of the split (--dataset chat: "
        "packed rows of held-out conversations, evenly spread over them); 0: all of them.",
        key="eval_windows",
    )
    tasks: str | None = option(
        None,
        "Benchmark tasks scored during training and at the end: core, chatcore (asked through the chat template: "
        "docs/chat.md), task names or a .toml file of your own, comma-separated (docs/benchmarks.md); default: none.",
    )
    tasks_every: int = option(2000, "Score the --tasks every N optimizer steps (and at the end); 0: only at the end.")
    tasks_max_per_task: int = option(
        500, "Items of each task scored during training, the first N of its shuffled order; 0: every item."
    )
    tasks_dir: str | None = option(
        None, "Folder of task files in the CORE layout (default: $LMTRAIN_DATA_DIR/core, the cache, a download)."
    )

    def __post_init__(self) -> None:
        non_negative("eval_every", self.every)
        non_negative("eval_windows", self.windows)
        non_negative("tasks_every", self.tasks_every)
        non_negative("tasks_max_per_task", self.tasks_max_per_task)


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """When checkpoints are written and how many are kept."""

    every: int = option(
        1000,
        "Write a checkpoint every N optimizer steps (and at the end); 0: only at the end.",
        key="save_every",
    )
    keep_last: int = option(3, "Checkpoints to keep (the best one is always kept as well).")

    def __post_init__(self) -> None:
        non_negative("save_every", self.every)
        positive("keep_last", self.keep_last)


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """What the run prints and records."""

    every: int = option(10, "Print and record a training line every N optimizer steps.", key="log_every")
    log: str = option(
        "jsonl,tensorboard",
        "Comma list of metric sinks: jsonl (metrics.jsonl), tensorboard, wandb (needs the wandb package).",
    )
    progress: Literal["auto", "bar", "plain"] = option(
        "auto",
        "Console output: a progress bar (auto: when stderr is a terminal) or plain log lines.",
    )
    sample_tokens: int = option(40, "Tokens of text to sample at the end of training (0: none).")

    def __post_init__(self) -> None:
        positive("log_every", self.every)
        non_negative("sample_tokens", self.sample_tokens)
        unknown = [s for s in self.sinks if s not in SINKS]
        if unknown or len(set(self.sinks)) != len(self.sinks):
            what = f"unknown sink {unknown[0]!r}" if unknown else "a sink named twice"
            raise ConfigError(f"log={self.log!r}: {what}; give a comma list of {', '.join(SINKS)}")

    @property
    def sinks(self) -> tuple[str, ...]:
        """The metric sinks --log names."""
        return tuple(s.strip() for s in self.log.split(",") if s.strip())


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """The checks before and during the run, and what a non-finite step does."""

    doctor: Literal["off", "warn", "strict"] = option(
        "warn",
        "Preflight checks at the start: off, warn (report and go on) or strict (refuse to start on an ERROR).",
    )
    on_nan: Literal["stop", "skip"] = option(
        "stop",
        "A non-finite loss or gradient norm: stop (keeping the last good checkpoint) or skip that optimizer step.",
    )
    max_skipped_steps: int = option(
        10,
        "With --on-nan skip: stop once this many optimizer steps in a row were skipped.",
    )

    def __post_init__(self) -> None:
        positive("max_skipped_steps", self.max_skipped_steps)


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """Several processes under torchrun."""

    parallel: Parallel = option(
        "ddp",
        "Under torchrun: ddp (a full copy per rank) or fsdp (parameters, gradients and optimizer state sharded).",
    )
    timeout: float = option(
        600.0,
        "Under torchrun: seconds a rank waits for the others before the run stops with the error of the rank that "
        "failed.",
        key="dist_timeout",
    )

    def __post_init__(self) -> None:
        positive("dist_timeout", self.timeout)


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


def batch_layout(global_batch: int, micro_batch: int | None, world_size: int) -> BatchLayout:
    """How `global_batch` splits over `world_size` ranks and micro-batches of `micro_batch` (default: a rank's whole
    share); a ConfigError if it does not."""
    if global_batch % world_size:
        raise ConfigError(
            f"batch_size={global_batch} (the global batch) is not divisible by the {world_size} ranks; choose a "
            f"multiple of {world_size} so every rank trains on the same number of sequences"
        )
    per_rank = global_batch // world_size
    micro = micro_batch or per_rank
    if per_rank % micro:
        raise ConfigError(
            f"micro_batch_size={micro} does not divide the {per_rank} sequences per rank (batch_size="
            f"{global_batch} over {world_size} ranks); choose a divisor of {per_rank}"
        )
    return BatchLayout(global_batch, world_size, per_rank, micro, per_rank // micro)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How the model is trained: length, batch, seed and hardware, then one section per concern."""

    epochs: float | None = option(
        None,
        "Passes over the training tokens (one epoch = every window once at the global batch size).",
    )
    max_steps: int | None = option(None, "Optimizer steps in all (instead of --epochs); the LR schedule spans them.")
    stop_at: int | None = option(
        None,
        "Stop after this optimizer step with a checkpoint, keeping the schedule of the full run (resume later).",
    )
    batch_size: int = option(32, "Sequences per optimizer step (the global batch).")
    micro_batch_size: int | None = option(
        None,
        "Sequences per forward/backward; gradients accumulate over batch_size/micro_batch_size (default: batch_size).",
    )
    seed: int = option(1337, "Seed for initialisation, data order and dropout.")
    device: Device = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps.")
    dtype: DType = option("auto", "Autocast precision: auto (bf16 on CUDA that has it, else fp32), fp32, bf16 or fp16.")
    compile: bool = option(False, "Compile the model with torch.compile.")
    init_from: str | None = option(
        None,
        "Start from this model's weights: a transformers folder (GPT-2, Llama, Qwen2, Qwen3), a GGUF file or an "
        "lmtrain run or checkpoint; its architecture, sizes and tokenizer are the run's, the optimizer and schedule "
        "start fresh.",
    )
    activation_checkpointing: bool = option(
        False,
        "Recompute each block's activations in the backward pass instead of keeping them (less memory, ~30% more "
        "compute per step).",
    )
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        if self.epochs is not None and self.max_steps is not None:
            raise ConfigError("give --epochs or --max-steps, not both")
        if self.evaluation.tasks and self.distributed.parallel == "fsdp":
            raise ConfigError(
                "--tasks during training runs under --parallel ddp or one process, not fsdp (each rank scores other "
                "items, which sharded blocks cannot); score the checkpoints with lmtrain eval RUN --tasks instead"
            )
        positive("epochs", self.epochs)
        for name in ("max_steps", "stop_at", "batch_size", "micro_batch_size"):
            positive(name, getattr(self, name))
        lr, min_lr = self.optimizer.peak_lr, self.schedule.min_lr
        if min_lr is not None and not 0 <= min_lr <= lr:
            raise ConfigError(f"min_lr={min_lr} must be between 0 and lr={lr}")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"micro_batch_size={self.micro_batch_size} does not divide batch_size={self.batch_size}; "
                f"choose a divisor so every optimizer step sees the same number of sequences"
            )
        if self.distributed.parallel == "fsdp" and self.dtype == "fp16":
            raise ConfigError("--parallel fsdp trains in fp32 or bf16; use --dtype bf16 (fp16 loss scaling is DDP's)")

    @property
    def micro(self) -> int:
        """Sequences per forward/backward (in one process)."""
        return self.layout(1).micro

    def layout(self, world_size: int) -> BatchLayout:
        """How the global batch splits over `world_size` ranks and their micro-batches; a ConfigError if it does not."""
        return batch_layout(self.batch_size, self.micro_batch_size, world_size)

    @property
    def final_lr(self) -> float:
        """Learning rate the decay ends at."""
        min_lr = self.schedule.min_lr
        return self.optimizer.peak_lr / MIN_LR_DIVISOR if min_lr is None else min_lr
