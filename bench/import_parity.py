"""The import table: each released model's published config (tests/fixtures/released/), depth cut to 2 layers and
random weights, through lmtrain and transformers both ways; the largest logit difference (fp32) at the start of a
sequence and at the end of the context the model supports. Recorded in bench/results/import-parity-cpu-2core.json.

Usage: python bench/import_parity.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/import-parity-cpu-2core.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    import torch
    import transformers

    from lmtrain.bench import provenance
    from lmtrain.interop.hf.read import adapter_for
    from lmtrain.model.registry import build_model
    from test_hf_released import MODELS, _hf, _logits_agree, _perturbed, released

    rows = []
    for name, cls in MODELS.items():
        config = released(name)
        adapter = adapter_for(config)
        cfg = adapter.from_hf_config(config)
        torch.manual_seed(0)
        hf = _perturbed(_hf(config), seed=0)
        ours = build_model(cfg).eval()
        ours.load_state_dict(adapter.from_hf_state_dict(hf.state_dict(), cfg), strict=True)
        idx = torch.randint(0, cfg.vocab_size, (2, 24))
        starts = (0, cfg.max_seq_len - 24)
        imported = max(_logits_agree(ours, hf, idx, s) for s in starts)
        _perturbed(ours, seed=1)
        hf.load_state_dict(adapter.to_hf_state_dict(ours.state_dict(), cfg, include_head=True), strict=True)
        exported = max(_logits_agree(ours, hf, idx, s) for s in starts)
        rows.append(
            {
                "model": name,
                "class": cls,
                "layers": 2,
                "max_logit_diff_import": imported,
                "max_logit_diff_export": exported,
                "positions": list(starts),
            }
        )
        print(json.dumps(rows[-1]))
    meta = provenance() | {"command": "python bench/import_parity.py", "transformers": transformers.__version__}
    args.out.write_text(json.dumps({"rows": rows, "provenance": meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
