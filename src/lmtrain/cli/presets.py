"""`lmtrain presets`: every preset with its sizes, parameter counts and training FLOPs per token."""

from __future__ import annotations

import argparse

from lmtrain.cli.common import add_arch_option, add_model_options, log, model_overrides, print_json
from lmtrain.defaults import FINETUNE, preset_lr
from lmtrain.errors import ConfigError
from lmtrain.model.registry import get_arch
from lmtrain.model.sizing import describe
from lmtrain.presets import PRESET_NOTES, apply_overrides, ff_warning, get_preset, presets

ABOUT = "Every preset with its sizes, parameter counts, training FLOPs per token and default learning rate."
FLOPS_NOTE = (
    "FLOPs/token = 6N + 12·L·d·T (training: forward + backward), N = parameters less those only looked up (a "
    "position table, an untied input embedding; a tied token embedding is the output projection), T = max_seq_len. "
    "non-emb = parameters less the embeddings and an untied head."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list model presets and their sizes", description=f"{ABOUT}\n\n{FLOPS_NOTE}")
    p.add_argument("preset", nargs="?", help="show only this preset (model overrides apply to it)")
    p.add_argument("--json", action="store_true", help="print a JSON object keyed by preset name")
    add_arch_option(p)
    add_model_options(p)
    p.set_defaults(handler=run)


LR_NOTE = (
    "lr = the default --lr (the AdamW groups' peak; with the default --optimizer muon the blocks' matrices run at 3x)."
)


FINETUNE_NOTE = (
    "train --init-from PATH (the model is PATH's, not a preset's): "
    + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in FINETUNE.items())
    + " unless given (docs/from-released.md)."
)


def run(args: argparse.Namespace) -> int:
    overrides = model_overrides(args)
    if overrides and not args.preset:
        raise ConfigError("model overrides need a preset: lmtrain presets NAME --d-model ...")
    names = [args.preset] if args.preset else list(presets(args.arch))
    configs = {name: apply_overrides(get_preset(name, args.arch), overrides) for name in names}
    rows = {name: describe(cfg) | {"lr": preset_lr(args.arch, name)} for name, cfg in configs.items()}
    if args.json:
        print_json(rows)
        return 0
    header = f"{'preset':<7} {'d_model':>7} {'heads':>5} {'layers':>6} {'d_ff':>5} {'ctx':>5} {'params':>12} {'non-emb':>12} {'FLOPs/token':>13} {'lr':>7}  note"
    print(f"--arch {args.arch}: {get_arch(args.arch).summary}")
    print(header)
    for name, r in rows.items():
        print(
            f"{name:<7} {r['d_model']:>7} {r['n_head']:>5} {r['n_layer']:>6} {r['d_ff']:>5} {r['max_seq_len']:>5} "
            f"{r['params']:>12,} {r['non_embedding_params']:>12,} {r['flops_per_token']:>13,} {r['lr']:>7g}  {'with overrides' if overrides else PRESET_NOTES.get(name, '')}"
        )
    print(f"\n{FLOPS_NOTE}\n{LR_NOTE}\n{FINETUNE_NOTE}")
    for cfg in configs.values():
        if warning := ff_warning(cfg):
            log(warning)
    return 0
