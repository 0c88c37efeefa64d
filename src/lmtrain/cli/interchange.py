"""`lmtrain export` and `lmtrain import`: move models to and from transformers folders and GGUF files."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_weights_option, data_paths, log
from lmtrain.errors import ConfigError

GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0")


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="write a model as a transformers folder or a GGUF file (llama.cpp, Ollama, LM Studio)",
        description="Write a model (a run folder: its best checkpoint; a checkpoint, a transformers folder or a GGUF "
        "file) with its tokenizer. --format hf: a folder that transformers' AutoModelForCausalLM.from_pretrained(OUT) "
        "loads, as the class its architecture equals (--arch gpt2: GPT2LMHeadModel; --arch modern: Qwen3ForCausalLM "
        "with QK-norm, Qwen2ForCausalLM with q/k/v biases, else LlamaForCausalLM). --format gguf: one file llama.cpp "
        "runs, as the GGUF architecture that computes it exactly (gpt2, qwen3, qwen2, llama); what no llama.cpp graph "
        "computes is refused.",
    )
    ex.add_argument(
        "checkpoint", type=Path, metavar="SOURCE", help="run or checkpoint folder, transformers folder or GGUF file"
    )
    ex.add_argument(
        "--format",
        choices=("hf", "gguf"),
        default="hf",
        help="hf (a transformers folder, the default) or gguf (one file for llama.cpp)",
    )
    ex.add_argument("--out", type=Path, required=True, help="new folder (hf) or file (gguf) to write")
    ex.add_argument(
        "--dtype",
        choices=GGUF_DTYPES,
        help="--format gguf: the matrices' type: f32, f16 (default), bf16 "
        "or q8_0 (the gguf package's quantizer; a matrix whose rows 32 does not divide stays f16)",
    )
    ex.add_argument("--force", action="store_true", help="--format gguf: replace an existing file")
    add_weights_option(ex)
    add_data_options(ex, dataset=False)
    ex.set_defaults(handler=run_export)
    for name, what in (("import", "a transformers folder or a GGUF file"), ("import-hf", "a transformers folder")):
        im = sub.add_parser(
            name,
            help=f"turn {what} into an lmtrain checkpoint",
            description=f"Convert {what} (GPT-2, Llama, Qwen2 or Qwen3; GGUF: gpt2, llama, qwen2, qwen3, any tensor "
            "type the gguf package dequantizes) into an lmtrain checkpoint that `lmtrain eval`, `generate` and `train "
            "--init-from` read, with its tokenizer. `eval`, `generate` and `train --init-from` also read the source "
            "directly.",
        )
        im.add_argument("folder", type=Path, metavar="SOURCE", help="transformers model folder or GGUF file")
        im.add_argument("--out", type=Path, required=True, help="new checkpoint folder to write")
        im.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    from lmtrain.errors import DataError
    from lmtrain.interop.open import open_model

    if args.format == "hf" and (args.dtype or args.force):
        raise ConfigError("--dtype and --force apply to --format gguf; --format hf writes fp32 into a new folder")
    opened = open_model(args.checkpoint, weights=args.weights)
    try:
        tokenizer = opened.tokenizer(data_paths(args).tokenizer_search())
    except DataError as exc:
        if args.format == "gguf":
            raise DataError(f"{exc}; a GGUF file carries its tokenizer, so the export needs one") from None
        tokenizer = None
        log(f"note: the folder has no tokenizer files ({exc})")
    if args.format == "gguf":
        from lmtrain.interop.gguf.write import export_gguf

        done = export_gguf(opened, args.out, tokenizer, dtype=args.dtype or "f16", force=args.force, log=log)
        print(
            f"exported {opened.path} to {done.path}: GGUF {done.arch}, {done.dtype}, {done.tensors} tensors, "
            f"{done.bytes / 2**20:.1f} MiB; run it with: llama-cli -m {done.path}"
        )
        return 0
    from lmtrain.interop.hf.folder import SILU_NOTE, export_hf

    written = export_hf(opened, args.out, tokenizer)
    if getattr(opened.config, "mlp", None) == "relu2":
        log(SILU_NOTE)
    print(f"exported {opened.path} to {args.out}: {', '.join(written)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from lmtrain.interop.open import import_model

    out = import_model(args.folder, args.out)
    print(f"imported {args.folder} to {out}; evaluate it with: lmtrain eval {out}")
    return 0
