"""Run configuration: the model, data and training sections, validated on construction, built from flat keys.

A run is a preset plus overrides. Every key a flag sets (`--batch-size`) is also a key of `--config run.toml`
(`batch-size` or `batch_size`); each key belongs to exactly one of the model, data or training sections (the
training section's own sections live in `train_config.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmtrain import __version__
from lmtrain.data.chat import Overflow
from lmtrain.data.chat.conversations import ChatFields
from lmtrain.data.holdout import HoldoutOptions
from lmtrain.defaults import preset_lr
from lmtrain.errors import ConfigError
from lmtrain.fields import field_types, flatten, from_flat, from_mapping, option, to_jsonable
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import DEFAULT_ARCH, model_from_dict, model_keys, model_to_dict
from lmtrain.presets import apply_overrides, get_preset
from lmtrain.train_config import TrainConfig, positive


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What the model is trained on, and where the data is looked for."""

    dataset: str = option("wikitext-103", "Dataset name (see `lmtrain prepare --help`).")
    data_dir: str | None = option(
        None,
        "Folder holding the split files; default $LMTRAIN_DATA_DIR, the cache, then a download.",
    )
    cache_dir: str | None = option(
        None,
        "Cache for downloads and prepared data; default $LMTRAIN_CACHE_DIR or ~/.cache/lmtrain.",
    )
    no_download: bool = option(False, "Never download; fail when the files are not local.")
    seq_len: int | None = option(
        None,
        "Tokens per training window; at most the model's max_seq_len (default: max_seq_len).",
    )
    tokenizer: str = option(
        "gpt2",
        "gpt2, a tokenizer.json (or a folder holding one, e.g. from `lmtrain tokenizer train`), a NAME.tiktoken "
        "file or a GGUF file (its vocabulary).",
    )
    text_field: str = option(
        "text",
        "The field of a JSON record (the column of a parquet file or datasets folder) holding a document's text.",
    )
    valid_docs: int | None = option(
        None,
        "Documents held out of the pool for valid when the corpus has no valid files (default: 1% of them).",
    )
    test_docs: int | None = option(
        None,
        "Documents held out of the pool for test when the corpus has no test files (default: 1% of them).",
    )
    valid_fraction: float | None = option(
        None,
        "Share of the pool's documents held out for valid (stable when files are added); instead of valid_docs.",
    )
    test_fraction: float | None = option(None, "Share of the pool's documents held out for test; instead of test_docs.")
    split_seed: int = option(0, "Seed of the document hash that chooses the held-out documents.")
    doc_mask: bool = option(
        False,
        "Attend only within each document of a training window (documents start at the end-of-document token; "
        "positions restart there), in training and validation; conversations always are.",
    )
    chat_fields: str | None = option(
        None,
        "--dataset chat: the record fields holding each role's message, as user=FIELD,assistant=FIELD[,system=FIELD] "
        "(GSM8K: user=question,assistant=answer); default: the messages, ShareGPT and prompt/completion layouts.",
    )
    chat_template: str | None = option(
        None,
        "--dataset chat: a file holding the Jinja chat template to render conversations with, or chatml (ChatML, its "
        "two special tokens added where the tokenizer lacks them and the embedding grown); default: the tokenizer's "
        "own. The template is saved with the run's tokenizer, so chat and export render as training did.",
    )
    chat_overflow: Overflow = option(
        "refuse",
        "--dataset chat: a conversation longer than seq_len + 1 tokens is refused (refuse), or cut into windows of "
        "seq_len + 1 tokens overlapping by one, pieces that train nothing left out (split).",
    )

    def __post_init__(self) -> None:
        positive("seq_len", self.seq_len)
        if self.dataset != "chat":
            given = [k for k in ("chat_fields", "chat_template") if getattr(self, k) is not None]
            given += ["chat_overflow"] if self.chat_overflow != "refuse" else []
            if given:
                raise ConfigError(f"{given[0]} goes with --dataset chat (conversations), not --dataset {self.dataset}")
        if self.chat_fields is not None:
            ChatFields.parse(self.chat_fields)
        positive("valid_docs", self.valid_docs)
        positive("test_docs", self.test_docs)
        for split in ("valid", "test"):
            fraction = getattr(self, f"{split}_fraction")
            if fraction is not None and not 0 < fraction < 0.5:
                raise ConfigError(f"{split}_fraction={fraction} must be between 0 and 0.5")
            if fraction is not None and getattr(self, f"{split}_docs") is not None:
                raise ConfigError(f"give {split}_docs or {split}_fraction, not both")
        if not self.text_field:
            raise ConfigError("text_field must name a field")

    def holdout_options(self) -> HoldoutOptions:
        """The holdout flags as `find_corpus` takes them."""
        return HoldoutOptions(
            valid_docs=self.valid_docs,
            test_docs=self.test_docs,
            valid_fraction=self.valid_fraction,
            test_fraction=self.test_fraction,
            seed=self.split_seed,
        )


RUN_CONFIG = "config.json"
"""The resolved configuration in a run folder (`RunConfig.to_dict`)."""
LOCATION_KEYS = ("data_dir", "cache_dir", "no_download")
"""DataConfig keys that say where data is, not what it is (flags shared with prepare, eval and generate)."""
CORPUS_KEYS = ("text_field", "valid_docs", "test_docs", "valid_fraction", "test_fraction", "split_seed")
"""DataConfig keys that say how a corpus is read and split (flags shared with prepare and eval)."""
PATH_KEYS = ("data_dir", "cache_dir", "out", "tokenizer", "tasks_dir", "chat_template")
"""Keys holding paths: `~` is expanded and, in a TOML file, relative paths start at the file's folder."""


def corpus_from(given: Mapping[str, Any], saved: Mapping[str, Any] | None = None) -> DataConfig:
    """A DataConfig of the corpus keys `given` over those a run recorded (`saved`, its data section)."""
    keys = (*CORPUS_KEYS, "tokenizer")
    base = {k: v for k, v in (saved or {}).items() if k in keys}
    return from_flat(DataConfig, {**base, **{k: v for k, v in given.items() if k in keys}}, "the corpus flags")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run: the model, the data and the training."""

    preset: str
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    origin: Mapping[str, Any] | None = None
    """Where a run started with --init-from began: the path, its kind, its weights' SHA-256 and, for a model
    released as a transformers folder, that folder's config.json (`train/init_from.py`)."""

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
        """JSON form, as saved in the run folder and in every checkpoint (the training sections nested)."""
        out = {"lmtrain_version": __version__, **to_jsonable(self), "model": model_to_dict(self.model)}
        out.pop("origin", None)
        return out | ({"init_from": dict(self.origin)} if self.origin is not None else {})

    def flat(self) -> dict[str, dict[str, Any]]:
        """{section: {flat key: value}} for the model, data and training sections."""
        return {name: flatten(getattr(self, name)) for name in SECTIONS}


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
"""The sections of a run; each flat key belongs to exactly one (the training sections are flattened; the model's
keys are those of every architecture)."""
RUN_LEVEL_KEYS = ("preset", "arch")
"""Keys that choose the model rather than set a field of a section."""


def section_of(key: str) -> str:
    """The section (model, data or train) a known flat key belongs to."""
    if key in model_keys():
        return "model"
    return next(name for name, cls in SECTIONS.items() if key in field_types(cls))


def normalise_keys(flat: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Flat keys with dashes turned into underscores; unknown keys are a ConfigError listing the known ones."""
    known = {*RUN_LEVEL_KEYS, *model_keys(), *(k for cls in SECTIONS.values() for k in field_types(cls))}
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


def build_run_config(
    flat: Mapping[str, Any],
    default_preset: str = "small",
    tokenizer_vocab: Callable[[DataConfig], int] | None = None,
) -> RunConfig:
    """RunConfig from flat keys (flags and TOML merged): an architecture and preset, model overrides, data and
    training keys. The model's vocabulary is the tokenizer's (`tokenizer_vocab`) unless vocab_size is given."""
    flat = normalise_keys(flat, "the run config")
    preset = str(flat.pop("preset", default_preset))
    arch = str(flat.pop("arch", DEFAULT_ARCH))
    parts: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in flat.items():
        parts[section_of(key)][key] = value
    data = from_flat(DataConfig, parts["data"], "data config")
    if tokenizer_vocab is not None and "vocab_size" not in parts["model"]:
        parts["model"]["vocab_size"] = tokenizer_vocab(data)
    model = apply_overrides(get_preset(preset, arch), parts["model"])
    parts["train"].setdefault("lr", preset_lr(arch, preset))
    return RunConfig(
        preset=preset,
        model=model,
        data=data,
        train=from_flat(TrainConfig, parts["train"], "training config"),
    )


def train_config_from_dict(saved: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from a saved `train` section: nested (this version) or one flat table (lmtrain 0.1)."""
    if any(isinstance(value, Mapping) for value in saved.values()):
        return from_mapping(TrainConfig, saved, "saved training config")
    flat = dict(saved)
    if "eval_batches" in flat:  # the first lmtrain 0.1 runs counted micro-batches of validation windows
        batches = flat.pop("eval_batches")
        flat["eval_windows"] = batches * (flat.get("micro_batch_size") or flat.get("batch_size", 32))
    return from_flat(TrainConfig, flat, "saved training config")


def run_config_from_dict(saved: Mapping[str, Any]) -> RunConfig:
    """RunConfig from its saved JSON form (a run folder's or checkpoint's config.json, of any lmtrain version)."""
    try:
        return RunConfig(
            preset=str(saved["preset"]),
            model=model_from_dict(saved["model"], "saved model config"),
            data=from_mapping(DataConfig, saved["data"], "saved data config"),
            train=train_config_from_dict(saved["train"]),
            origin=saved.get("init_from"),
        )
    except KeyError as exc:
        raise ConfigError(f"saved run config lacks the {exc.args[0]!r} section") from None
