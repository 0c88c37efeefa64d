"""One way to open a model, whatever PATH holds: an lmtrain run folder (its best checkpoint) or checkpoint folder, a
transformers model folder, or a GGUF file, recognised by content (GGUF's magic bytes, a config.json naming a
model_type), never by name. `eval`, `generate`, `eval --tasks`, `bench tasks`, `export` and `train --init-from` all
open models here; `import_model` writes what it opened as an lmtrain checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmtrain.checkpoint import (
    load_checkpoint_config,
    load_model,
    load_weights,
    model_config_of,
    resolve_checkpoint,
    weights_file,
    write_checkpoint,
)
from lmtrain.data.tokenizers.carry import CARRIED
from lmtrain.data.tokenizers.gpt2 import gpt2_fingerprint
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.files import require_new_folder
from lmtrain.gguf_file import is_gguf
from lmtrain.interop.gguf.read import read_gguf_model
from lmtrain.interop.hf.read import is_hf_folder, read_hf_folder
from lmtrain.interop.opened import OpenedModel
from lmtrain.interop.provenance import Format, Provenance, released_config

SOURCES = "an lmtrain run or checkpoint folder, a transformers model folder or a GGUF file"


def source_format(path: Path) -> Format:
    """What `path` holds, by content: gguf (its magic bytes), transformers (a config.json with a model_type) or
    lmtrain (anything else, checked when it is read)."""
    if is_gguf(path):
        return "gguf"
    if path.is_dir() and is_hf_folder(path):
        return "transformers"
    return "lmtrain"


def open_model(path: Path, *, which: str = "best", weights: str = "auto") -> OpenedModel:
    """The model at `path` (a run folder means its `which` checkpoint; `weights`: auto, ema or raw, for lmtrain
    checkpoints); what holds no model is a CheckpointError saying what was expected."""
    path = path.expanduser()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give {SOURCES}")
    fmt = source_format(path)
    if fmt == "gguf":
        return read_gguf_model(path)
    if fmt == "transformers":
        return read_hf_folder(path)
    if path.is_file():
        raise CheckpointError(f"{path} is a file but not a GGUF file (no GGUF magic bytes); give {SOURCES}")
    return _read_checkpoint(path, which, weights)


def _read_checkpoint(path: Path, which: str, weights: str) -> OpenedModel:
    ckpt = resolve_checkpoint(path, which)
    config = load_checkpoint_config(ckpt)
    cfg = model_config_of(config, ckpt)
    source = weights_file(ckpt, weights)
    tensors = load_weights(ckpt, weights)
    fingerprint = config.get("tokenizer")
    carried = ckpt / CARRIED
    gpt2 = fingerprint in (None, gpt2_fingerprint())
    return OpenedModel(
        provenance=Provenance(format="lmtrain", path=ckpt.resolve(), files=(source,), released=released_config(config)),
        config=cfg,
        weights=tensors,
        checkpoint=config,
        tokenizer_arg="gpt2" if gpt2 else str(carried) if carried.is_dir() else None,
    )


def import_model(src: Path, out: Path) -> Path:
    """Write a transformers folder or a GGUF file as an lmtrain checkpoint folder `out` (new or empty): its weights,
    its tokenizer, and where it came from (`source`). Evaluable, not resumable: `train --init-from` continues it."""
    require_new_folder(out)
    src = src.expanduser()
    if src.is_dir() and source_format(src) == "lmtrain":
        if (src / "config.json").is_file() and not is_hf_folder(src):
            raise ConfigError(f"{src} is already an lmtrain checkpoint; evaluate or continue it directly")
        raise CheckpointError(
            f"{src} has no config.json naming a model_type; `lmtrain import` reads a transformers folder or a GGUF file"
        )
    opened = open_model(src)
    config = opened.checkpoint | {"source": opened.provenance.record()}
    write_checkpoint(out, opened.weights, config, tokenizer=opened.carried)
    try:
        load_model(out)  # every tensor is there with the shape the config implies
    except CheckpointError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out
