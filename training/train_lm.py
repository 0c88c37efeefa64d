#!/usr/bin/env python3
"""The familiar entry point, a thin wrapper over `lmtrain train`.

    python training/train_lm.py --dataset wikitext --epochs 10 --model_preset small --warmup 4000 --lr 6e-4

Also --max_seq_len, --batch_size, --d_model, --num_heads, --num_layers, --d_ff, and every `lmtrain train`
flag with underscores or dashes (see `lmtrain train --help`).
"""

import sys
from pathlib import Path

try:
    from lmtrain.cli.legacy import main
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lmtrain.cli.legacy import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
