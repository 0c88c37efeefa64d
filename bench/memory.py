"""The doctor's memory estimate (`model.sizing.step_memory`) against the measured peak of one optimizer step on this
CPU, as recorded in bench/results/memory-cpu-2core.json: each case runs in a fresh process, which reports its peak
resident memory (ru_maxrss) above what it held after importing torch and reading the config. Cases: `tiny` and
`small` (AdamW and Muon), and the published SmolLM2-135M, Qwen2.5-0.5B and Qwen3-0.6B configs (every layer, random
weights), with and without --activation-checkpointing.

Usage: python bench/memory.py [--out FILE] [--quick]   (--quick: tiny and SmolLM2 only)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

RELEASED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "released"
GIB = 1 << 30
CASES = [
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "adamw"},
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "muon"},
    {"model": "small", "batch": 4, "seq": 512, "optimizer": "adamw"},
    {"model": "SmolLM2-135M", "batch": 2, "seq": 512, "optimizer": "adamw"},
    {"model": "SmolLM2-135M", "batch": 2, "seq": 512, "optimizer": "adamw", "checkpointing": True},
    {"model": "Qwen2.5-0.5B", "batch": 1, "seq": 512, "optimizer": "adamw"},
    {"model": "Qwen3-0.6B", "batch": 1, "seq": 512, "optimizer": "adamw"},
    {"model": "Qwen3-0.6B", "batch": 1, "seq": 512, "optimizer": "adamw", "checkpointing": True},
]


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_case(case: dict) -> dict:
    """In this process: one optimizer step of the case; its peak above the baseline, and the estimate."""
    import numpy as np
    import torch

    from lmtrain.config import RunConfig, build_run_config
    from lmtrain.fields import from_flat
    from lmtrain.interop.hf_read import adapter_for
    from lmtrain.model.sizing import step_memory
    from lmtrain.train.parts import build_training
    from lmtrain.train_config import TrainConfig

    torch.set_num_threads(2)
    keys = {
        "batch_size": case["batch"],
        "optimizer": case["optimizer"],
        "lr": 1e-4,
        "warmup": 0,
        "activation_checkpointing": bool(case.get("checkpointing")),
        "max_steps": 10,
    }
    if (RELEASED / f"{case['model']}.json").is_file():
        hf = json.loads((RELEASED / f"{case['model']}.json").read_text())
        model = adapter_for(hf).from_hf_config(hf)
        cfg = RunConfig(preset="init-from", model=model, train=from_flat(TrainConfig, keys, "bench"))
    else:
        cfg = build_run_config({"preset": case["model"], **keys})
    seq = case["seq"]
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, 64 * seq, dtype=np.int64)
    cfg = RunConfig(preset=cfg.preset, model=cfg.model, data=cfg.data.__class__(seq_len=seq), train=cfg.train)
    baseline = _rss()
    step = build_training(cfg, tokens=tokens, device=torch.device("cpu"), dtype="fp32")
    step(0)
    step(1)  # the optimizer's state exists from the first step on
    peak = _rss() - baseline
    estimate = step_memory(
        cfg.model, case["batch"] * seq, muon=case["optimizer"] == "muon", checkpointing=bool(case.get("checkpointing"))
    )
    return case | {
        "parameters": cfg.model.param_counts()["total"],
        "measured_gib": round(peak / GIB, 3),
        "estimate_gib": round(estimate / GIB, 3),
        "estimate_over_measured": round(estimate / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory-cpu-2core.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    from lmtrain.bench import provenance

    cases = [c for c in CASES if not args.quick or c["model"] in ("tiny", "SmolLM2-135M")]
    rows = []
    for case in cases:
        done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    args.out.write_text(
        json.dumps({"rows": rows, "provenance": provenance() | {"command": "python bench/memory.py"}}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
