"""Reading a GGUF file (llama.cpp's format) as lmtrain's model: the architecture's GGUF adapter maps it to the
transformers form (`model/gguf_*.py`), whose adapter maps it to lmtrain's; every tensor is dequantized (every type
the `gguf` package reads: F32, F16, BF16, Q8_0, Q4_0/1, Q5_0/1, the K-quants, ...) to fp32, and the tokenizer is rebuilt
from the file's vocabulary (`data/tokenizers/gguf_vocab.py`).

What lmtrain cannot compute or read is refused before any tensor is dequantized: an architecture it does not build, a
tokenizer it does not rebuild, a tensor type the `gguf` package cannot dequantize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtrain.data.tokenizers.gguf_vocab import GGUFTokenizer, tokenizer_files
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.gguf_file import GGUFFile, TensorRecord, read_gguf
from lmtrain.interop.hf.read import expected_hf_shapes
from lmtrain.interop.opened import OpenedModel, checkpoint_config
from lmtrain.interop.provenance import Provenance
from lmtrain.interop.shapes import check_shapes
from lmtrain.model.interchange import GGUFAdapter, GGUFModel
from lmtrain.model.registry import Architecture, gguf_adapters, hf_adapter

GGUF_PRESET = "gguf-import"
"""The preset name of a checkpoint read from a GGUF file."""


def adapter_for(arch: str, where: Path) -> tuple[Architecture, GGUFAdapter]:
    """The architecture whose GGUF adapter reads `general.architecture` = `arch`."""
    found = gguf_adapters()
    for architecture, adapter in found:
        if arch in adapter.ARCHITECTURES:
            return architecture, adapter
    known = ", ".join(name for _, adapter in found for name in adapter.ARCHITECTURES)
    raise ConfigError(f"{where} holds a {arch!r} model; lmtrain computes the GGUF architectures {known}")


def _quant_type(record: TensorRecord) -> Any:
    from gguf.constants import GGMLQuantizationType

    return GGMLQuantizationType(record.ggml_type)


def check_dequantizable(gf: GGUFFile) -> None:
    """Every tensor's type is one the `gguf` package dequantizes; the first that is not is a CheckpointError."""
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    first_of = {record.ggml_type: record for record in reversed(gf.tensors.values())}  # one tensor of each type
    for record in first_of.values():
        qtype = _quant_type(record)
        try:
            dequantize(np.zeros((1, GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8), qtype)  # one block of zeros
        except NotImplementedError:
            raise CheckpointError(
                f"{gf.path}: tensor {record.name} is {qtype.name}, which the gguf package cannot dequantize; use a "
                f"file of another quantization (F16, Q8_0, Q4_K_M, ...)"
            ) from None


def dequantized(gf: GGUFFile, record: TensorRecord) -> torch.Tensor:
    """The tensor as fp32, in PyTorch's layout (rows first)."""
    from gguf.constants import GGMLQuantizationType as Q
    from gguf.quants import dequantize

    qtype, raw = _quant_type(record), gf.raw(record)
    if qtype == Q.BF16:
        values = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16).float()
    elif qtype in (Q.F32, Q.F16):
        values = torch.from_numpy(raw.view(np.float32 if qtype == Q.F32 else np.float16).astype(np.float32))
    else:
        rows = int(np.prod(record.shape[:-1])) if len(record.shape) > 1 else 1
        values = torch.from_numpy(dequantize(raw.reshape(rows, -1), qtype).astype(np.float32, copy=False))
    return values.reshape(record.shape).contiguous()


def read_gguf_model(path: Path) -> OpenedModel:
    """The GGUF file at `path` read as lmtrain's model, with its tokenizer and origin."""
    gf = read_gguf(path)
    arch = str(gf.require("general.architecture"))
    architecture, adapter = adapter_for(arch, path)
    spec_and_config = tokenizer_files(gf.fields, path)
    check_dequantizable(gf)
    prefix = f"{arch}."
    fields = {k.removeprefix(prefix): v for k, v in gf.fields.items() if k.startswith(prefix)}
    tensors = {name: dequantized(gf, record) for name, record in gf.tensors.items()}
    try:
        hf_config, state = adapter.from_gguf(GGUFModel(arch=arch, fields=fields, tensors=tensors))
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks {exc.args[0]}, which every {arch} model has") from None
    hf = hf_adapter(architecture.name)
    cfg = hf.from_hf_config(hf_config)
    expected = expected_hf_shapes(cfg, hf)
    check_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, where=path, config="GGUF metadata")
    weights = {k: v.contiguous() for k, v in hf.from_hf_state_dict(state, cfg).items()}
    tokenizer = GGUFTokenizer(path, built=spec_and_config)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ConfigError(
            f"{path}'s tokenizer has {tokenizer.vocab_size:,} ids but its embedding has {cfg.vocab_size:,} rows"
        )
    name = gf.get("general.name")
    provenance = Provenance(
        format="gguf", path=path.resolve(), files=(path,), name=str(name) if name else None, released=hf_config
    )
    return OpenedModel(
        provenance=provenance,
        config=cfg,
        weights=weights,
        checkpoint=checkpoint_config(cfg, tokenizer, preset=GGUF_PRESET, gpt2=False),
        tokenizer_arg=str(path.resolve()),
        carried=tokenizer,
    )
