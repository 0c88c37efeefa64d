"""`lmtrain export --format gguf`: a model as one GGUF file llama.cpp (and Ollama, LM Studio, llamafile) runs.

The model goes through its transformers form (`interop/hf/folder.hf_form`) to the GGUF architecture that computes it
exactly (`model/gguf_*.py`); the tokenizer's vocabulary, merges, cut, special ids and chat template become
`tokenizer.*` (`data/tokenizers/gguf_vocab.py`). Tensors are written as `--dtype` says: f32, f16 or bf16, or q8_0
through the `gguf` package's own quantizer; vectors (norms, biases, rotary factors) stay f32, as llama.cpp's converter
keeps them, and a matrix whose rows q8_0's 32-value blocks do not divide stays f16 (the export says which). The file is
written under a temporary name and renamed complete: an interrupted export leaves no partial file, and an existing
file is replaced only with `force`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gguf_vocab import tokenizer_fields
from lmtrain.errors import ConfigError
from lmtrain.files import temp_name
from lmtrain.interop.hf.folder import hf_form
from lmtrain.interop.opened import OpenedModel
from lmtrain.model.registry import gguf_adapter

DTYPES = ("f32", "f16", "bf16", "q8_0")
"""--dtype of a GGUF export."""
Q8_BLOCK = 32
"""Values per q8_0 block: a matrix row must be a multiple of it to be quantized."""


@dataclass(frozen=True)
class GGUFExport:
    """What an export wrote."""

    path: Path
    arch: str
    dtype: str
    tensors: int
    kept_f16: tuple[str, ...]
    """Matrices left in f16 under --dtype q8_0 (their rows are not a multiple of 32)."""
    bytes: int


def _file_type(dtype: str) -> int:
    from gguf.constants import LlamaFileType

    return {
        "f32": LlamaFileType.ALL_F32,
        "f16": LlamaFileType.MOSTLY_F16,
        "bf16": LlamaFileType.MOSTLY_BF16,
        "q8_0": LlamaFileType.MOSTLY_Q8_0,
    }[dtype]


def encoded(value: torch.Tensor, dtype: str) -> tuple[np.ndarray, Any, bool]:
    """(array, raw GGML type or None, kept in f16) of one tensor under `dtype`: vectors f32, matrices as asked."""
    from gguf.constants import GGMLQuantizationType as Q
    from gguf.quants import quantize

    array = value.detach().to(torch.float32).cpu().numpy()
    if array.ndim < 2 or dtype == "f32":
        return array, None, False
    if dtype == "f16":
        return array.astype(np.float16), None, False
    if dtype == "bf16":
        return quantize(array, Q.BF16), Q.BF16, False
    if array.shape[-1] % Q8_BLOCK:
        return array.astype(np.float16), None, True
    return quantize(array, Q.Q8_0), Q.Q8_0, False


def _add_field(writer: Any, key: str, value: Any) -> None:
    """One metadata key, typed as llama.cpp reads it: counts and ids uint32, ratios float32, lists as arrays."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def export_gguf(
    opened: OpenedModel,
    out: Path,
    tokenizer: Tokenizer,
    *,
    dtype: str = "f16",
    force: bool = False,
    log: Callable[[str], None] = print,
) -> GGUFExport:
    """Write the model with its tokenizer as the GGUF file `out`; what llama.cpp cannot compute or read is a
    ConfigError or DataError before anything is written."""
    from gguf import GGUFWriter

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the path of the .gguf file to write")
    if out.exists() and not force:
        raise ConfigError(f"--out {out} exists; give another path, or --force to replace it")
    hf_config, state = hf_form(opened, tokenizer)
    model = gguf_adapter(opened.config).to_gguf(hf_config, state)
    fields: dict[str, Any] = {f"{model.arch}.{k}": v for k, v in model.fields.items()}
    fields |= tokenizer_fields(
        tokenizer.bpe_vocab(),
        vocab_size=opened.config.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        add_bos=tokenizer.add_bos,
        chat_template=tokenizer.chat_template,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    writer = GGUFWriter(path=None, arch=model.arch)
    try:
        kept = _fill(writer, fields=fields, tensors=model.tensors, dtype=dtype, name=opened.provenance.name or out.stem)
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    if kept:
        log(
            f"note: --dtype q8_0 kept {len(kept)} matrices in f16 (rows not a multiple of {Q8_BLOCK}): {', '.join(kept)}"
        )
    return GGUFExport(
        path=out,
        arch=model.arch,
        dtype=dtype,
        tensors=len(model.tensors),
        kept_f16=tuple(kept),
        bytes=out.stat().st_size,
    )


def _fill(
    writer: Any, *, fields: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], dtype: str, name: str
) -> list[str]:
    """Add the metadata and tensors to `writer`; the matrices kept in f16 under q8_0."""
    from gguf.constants import GGML_QUANT_VERSION

    writer.add_name(name)
    writer.add_file_type(_file_type(dtype))
    if dtype == "q8_0":
        writer.add_quantization_version(GGML_QUANT_VERSION)
    for key, value in fields.items():
        _add_field(writer, key, value)
    kept = []
    for tensor_name, value in tensors.items():
        array, raw, in_f16 = encoded(value, dtype)
        writer.add_tensor(tensor_name, array, raw_dtype=raw)
        if in_f16:
            kept.append(tensor_name)
    return kept
