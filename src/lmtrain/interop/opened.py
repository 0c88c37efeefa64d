"""A model opened from any source (an lmtrain checkpoint, a transformers folder, a GGUF file), as lmtrain's: the record
every reader returns and every command uses (`open.py` decides which reader)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmtrain import __version__
from lmtrain.checkpoint import model_holding
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.carry import carried_tokenizer
from lmtrain.data.tokenizers.gpt2 import gpt2_fingerprint, load_gpt2
from lmtrain.errors import DataError
from lmtrain.interop.provenance import Provenance
from lmtrain.model.config import ModelConfig
from lmtrain.model.registry import model_to_dict


@dataclass(frozen=True)
class OpenedModel:
    """A model read as lmtrain's: its config, weights (lmtrain's names, fp32), tokenizer and origin."""

    provenance: Provenance
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    checkpoint: dict[str, Any]
    """The checkpoint config.json the source stands for: the model, the tokenizer's fingerprint, and for an lmtrain
    checkpoint what it was trained on."""
    tokenizer_arg: str | None
    """The --tokenizer value that rebuilds its tokenizer (None: the source holds none)."""
    carried: Tokenizer | None = None
    """The tokenizer a transformers folder or GGUF file holds, read with the model."""

    @property
    def path(self) -> Path:
        """What was opened."""
        return self.provenance.path

    def tokenizer(self, search: Sequence[Path]) -> Tokenizer:
        """Its tokenizer (GPT-2 BPE's files looked for in `search`); a source without one is a DataError."""
        if self.carried is not None:
            return self.carried
        if self.provenance.format == "lmtrain":
            return carried_tokenizer(self.path, self.checkpoint.get("tokenizer"), search)
        if self.tokenizer_arg == "gpt2":
            return load_gpt2(search)
        raise DataError(f"{self.path} holds no tokenizer (tokenizer.json); give the model's own with --tokenizer")

    def model(self, device: torch.device | str = "cpu") -> Any:
        """The model on `device` in eval mode, holding the weights."""
        return model_holding(self.config, self.weights, device, self.path)


def checkpoint_config(cfg: ModelConfig, tokenizer: Tokenizer | None, *, preset: str, gpt2: bool) -> dict[str, Any]:
    """The checkpoint config.json of a model read from another format: its model and tokenizer (GPT-2 BPE for a
    folder of GPT-2's own files, `gpt2`); `import` adds its `source`."""
    config: dict[str, Any] = {"lmtrain_version": __version__, "preset": preset, "model": model_to_dict(cfg)}
    if tokenizer is not None:
        config["tokenizer"] = tokenizer.fingerprint()
    elif gpt2:
        config["tokenizer"] = gpt2_fingerprint()
    return config
