"""The doctor's memory estimate (`model.sizing.step_memory`) against the measured peak of one optimizer step on this
CPU, as recorded in bench/results/memory-cpu-2core.json: each case runs in a fresh process, which reports the peak of
the bytes its tensors held at once, as torch's CPU allocator counts them under the profiler (`Total Allocated` of the
profiler's memory events; the same in every run, however loaded the machine), and a second fresh process without
the profiler its peak resident memory (ru_maxrss) above what it held after importing torch and reading the config
(the allocator's cache included; it varies by tens of percent with the machine's load). Cases: `tiny` and
`small` (AdamW and Muon), and the published SmolLM2-135M, Qwen2.5-0.5B and Qwen3-0.6B configs (every layer, random
weights), with and without --activation-checkpointing.

Usage: python bench/memory.py [--out FILE] [--quick]   (--quick: tiny and SmolLM2 only)
       python bench/memory.py --case JSON [--rss]     (one case in this process: its tensor peak, or with --rss its RSS)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RELEASED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "released"
GIB = 1 << 30
CASES = [
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "adamw"},
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "muon"},
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "adamw", "untied": True},
    {"model": "tiny", "batch": 8, "seq": 256, "optimizer": "adamw", "dtype": "bf16"},
    {"model": "small", "batch": 4, "seq": 512, "optimizer": "adamw"},
    {"model": "SmolLM2-135M", "batch": 2, "seq": 512, "optimizer": "adamw"},
    {"model": "SmolLM2-135M", "batch": 2, "seq": 512, "optimizer": "adamw", "checkpointing": True},
    {"model": "Qwen2.5-0.5B", "batch": 1, "seq": 512, "optimizer": "adamw"},
    {"model": "Qwen3-0.6B", "batch": 1, "seq": 512, "optimizer": "adamw"},
    {"model": "Qwen3-0.6B", "batch": 1, "seq": 512, "optimizer": "adamw", "checkpointing": True},
]


def _tensor_peak(trace: Path) -> int:
    """The most bytes CPU tensors held at once while the profiler ran: its memory events carry the allocator's total."""
    events = json.loads(trace.read_text())["traceEvents"]
    return max(e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]")


def run_case(case: dict, *, rss: bool = False) -> dict:
    """In this process: two optimizer steps of the case (the optimizer's state exists from the first step on) and the
    estimate; the peak of their tensors' bytes under the profiler, or with `rss` (no profiler) the peak resident
    memory above the baseline."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lmtrain.bench.timing import peak_memory
    from lmtrain.config import RunConfig, build_run_config
    from lmtrain.fields import from_flat
    from lmtrain.interop.hf.read import adapter_for
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
        cfg = build_run_config({"preset": case["model"], **keys} | ({"tie": False} if case.get("untied") else {}))
    seq = case["seq"]
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, 64 * seq, dtype=np.int64)
    cfg = RunConfig(preset=cfg.preset, model=cfg.model, data=cfg.data.__class__(seq_len=seq), train=cfg.train)
    dtype = case.get("dtype", "fp32")
    estimate = step_memory(
        cfg.model,
        case["batch"] * seq,
        dtype == "bf16",
        muon=case["optimizer"] == "muon",
        checkpointing=bool(case.get("checkpointing")),
    )
    baseline = peak_memory(torch.device("cpu"))[0]  # the process's peak RSS so far
    prof = contextlib.nullcontext() if rss else profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with prof:
        step = build_training(cfg, tokens=tokens, device=torch.device("cpu"), dtype=dtype)
        step(0)
        step(1)
    if rss:
        grown = peak_memory(torch.device("cpu"))[0] - baseline
        return {
            "rss_gib": round(grown / GIB, 3),
            "estimate_over_rss": round(estimate / grown, 3),
        }
    with tempfile.TemporaryDirectory() as tmp:
        prof.export_chrome_trace(f"{tmp}/trace.json")
        peak = _tensor_peak(Path(tmp) / "trace.json")
    return case | {
        "parameters": cfg.model.param_counts()["total"],
        "measured_gib": round(peak / GIB, 3),
        "estimate_gib": round(estimate / GIB, 3),
        "estimate_over_measured": round(estimate / peak, 3),
    }


def _in_fresh_process(case: dict, *flags: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case), *flags], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory-cpu-2core.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case), rss=args.rss)))
        return
    from lmtrain.bench import provenance

    cases = [c for c in CASES if not args.quick or c["model"] in ("tiny", "SmolLM2-135M")]
    rows = []
    for case in cases:
        rows.append(_in_fresh_process(case) | _in_fresh_process(case, "--rss"))
        print(json.dumps(rows[-1]))
    args.out.write_text(
        json.dumps({"rows": rows, "provenance": provenance() | {"command": "python bench/memory.py"}}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
