"""Where a model came from, the same record for every format: recorded by `train --init-from` (config.json, every
checkpoint, the report) and by `lmtrain import` (the checkpoint's `source`), and read back by export, which keeps a
released model's keys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from lmtrain.files import sha256_file

Format = Literal["lmtrain", "transformers", "gguf"]


@dataclass(frozen=True)
class Provenance:
    """A model's origin: its format, path, weights files (hashed when recorded) and the released config it came from."""

    format: Format
    path: Path
    """What was opened: a checkpoint folder, a transformers folder or a GGUF file."""
    files: tuple[Path, ...]
    """The files its weights were read from."""
    name: str | None = None
    """The name the release gives itself (config.json's _name_or_path, GGUF's general.name)."""
    released: dict[str, Any] | None = None
    """The transformers config.json of the released model it is or came from (export keeps its keys); None for a
    model trained from scratch."""

    @cached_property
    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of each weights file, by name (what `sha256sum` prints): read only where it is recorded."""
        return {path.name: sha256_file(path) for path in self.files}

    def record(self) -> dict[str, Any]:
        """What config.json and the report say about it."""
        return {
            "format": self.format,
            "path": str(self.path),
            **({"name": self.name} if self.name else {}),
            "weights_sha256": self.weights_sha256,
            **({"hf_config": self.released} if self.released is not None else {}),
        }


def released_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The released config.json a checkpoint's model came from: an import's (`source`) or that of the model a run
    started from (`init_from`); None for a model trained from scratch."""
    origin = config.get("init_from") or config.get("source") or {}
    return origin.get("hf_config")
