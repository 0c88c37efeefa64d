"""`lmtrain export` and `lmtrain import-hf`: move models to and from the transformers class each architecture equals."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_weights_option, data_paths, log


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="write a checkpoint as a transformers folder (GPT-2, Llama or Qwen3)",
        description="Write CHECKPOINT as a folder that transformers' AutoModelForCausalLM.from_pretrained(OUT) loads, as "
        "the class its architecture equals (--arch gpt2: GPT2LMHeadModel; --arch modern: Qwen3ForCausalLM with QK-norm, "
        "else LlamaForCausalLM), with the run's tokenizer in a form AutoTokenizer loads.",
    )
    ex.add_argument("checkpoint", type=Path, help="checkpoint folder, or a run folder (its best)")
    ex.add_argument("--format", choices=("hf",), default="hf", help="output format (hf: a transformers folder)")
    ex.add_argument("--out", type=Path, required=True, help="new folder to write")
    add_weights_option(ex)
    add_data_options(ex, dataset=False)
    ex.set_defaults(handler=run_export)
    im = sub.add_parser(
        "import-hf",
        help="turn a transformers GPT-2, Llama or Qwen3 folder into an lmtrain checkpoint",
        description="Convert a transformers GPT-2, Llama or Qwen3 folder (config.json + model.safetensors, its shards or "
        "pytorch_model.bin) into an lmtrain checkpoint that `lmtrain eval` and `lmtrain generate` read, with the folder's "
        "tokenizer.json where it has one.",
    )
    im.add_argument("folder", type=Path, help="transformers model folder")
    im.add_argument("--out", type=Path, required=True, help="new checkpoint folder to write")
    im.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    from lmtrain.checkpoint import load_checkpoint_config, resolve_checkpoint
    from lmtrain.data.tokenizers.carry import carried_tokenizer
    from lmtrain.errors import DataError
    from lmtrain.interop.hf_folder import export_hf

    ckpt = resolve_checkpoint(args.checkpoint, "best")
    fingerprint = load_checkpoint_config(ckpt).get("tokenizer")
    try:
        tokenizer = carried_tokenizer(ckpt, fingerprint, data_paths(args).tokenizer_search())
    except DataError as exc:
        tokenizer = None
        log(f"note: the folder has no tokenizer files ({exc})")
    written = export_hf(ckpt, args.out, tokenizer, args.weights)
    if tokenizer is not None and not any(name.startswith(("vocab", "tokenizer.")) for name in written):
        log("note: no GPT-2 BPE files found (encoder.json, vocab.bpe); the folder has no tokenizer files")
    print(f"exported {ckpt} to {args.out}: {', '.join(written)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from lmtrain.interop.hf_folder import import_hf

    out = import_hf(args.folder, args.out)
    print(f"imported {args.folder} to {out}; evaluate it with: lmtrain eval {out}")
    return 0
