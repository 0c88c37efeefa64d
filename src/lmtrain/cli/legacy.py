"""The entry points our users already type, as thin wrappers over `lmtrain train`.

`python training/train_lm.py --dataset wikitext --epochs 10 --model_preset small --warmup 4000 --lr 6e-4`
and `./run/run_train_lm.sh --preset small ...` both land here: flags are translated
(`--model_preset` -> `--preset`, `--num_heads` -> `--n-head`, `--num_layers` -> `--n-layer`,
`--batch_size` -> `--batch-size`, any other underscore -> dash) and passed to `lmtrain train`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

ALIASES = {
    "model_preset": "preset",
    "num_heads": "n-head",
    "num_layers": "n-layer",
    "n_heads": "n-head",
    "n_layers": "n-layer",
}


def translate(argv: Sequence[str]) -> list[str]:
    """`lmtrain train` arguments for the familiar train_lm.py flags."""
    out = ["train"]
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            out.append("--" + ALIASES.get(name, name).replace("_", "-") + eq + value)
        else:
            out.append(arg)
    return out


USAGE = """\
usage: python training/train_lm.py [lmtrain train flags, with dashes or underscores]

The familiar entry point of lmtrain train. Also accepted: --model_preset (--preset), --num_heads and --n_heads
(--n-head), --num_layers and --n_layers (--n-layer), and every flag below written with underscores
(--batch_size, --max_seq_len, --d_model, --d_ff, ...).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lmtrain train` with translated flags (with --help: this usage, then lmtrain train's)."""
    from lmtrain.cli import main as lmtrain_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE, flush=True)
    return lmtrain_main(translate(argv))
