"""Collect bench/finetune.sh's runs into bench/results/finetune-sweep-cpu-2core.json (the race and sweep behind
--init-from's defaults) and finetune-e2e-cpu-2core.json (continued against from scratch). Usage: WORK OUT_DIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmtrain.bench import provenance


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _evals(run: Path) -> list[dict]:
    return [
        {"step": r["step"], "tokens": r["tokens"], "val_loss": r["val_loss"]}
        for r in _records(run)
        if r["event"] == "eval"
    ]


def _sweep(work: Path, prefix: str) -> list[dict]:
    rows = []
    for run in sorted(work.glob(f"{prefix}-*-*")):
        _, opt, lr = run.name.split("-", 2)
        if opt not in ("adamw", "muon") or not (run / "metrics.jsonl").is_file():
            continue
        evals = _evals(run)
        rows.append(
            {
                "optimizer": opt,
                "lr": float(lr),
                "start_val_loss": evals[0]["val_loss"],
                "final_val_loss": evals[-1]["val_loss"],
            }
        )
    return rows


def main(work: Path, out: Path) -> None:
    meta = provenance() | {"command": "bench/finetune.sh; bench/finetune_strong.sh"}
    sweeps = {
        "far_start": {
            "what": "--init-from a tiny pretrained on the sample (wikitext, exported) on linux-docs: a start far from "
            "the target (validation loss near ln V); 40 steps of 8 x 128 tokens, warmup 5%, cosine",
            "runs": _sweep(work, "sweep"),
        },
        "near_start": {
            "what": "--init-from a tiny pretrained on linux-docs for 200 steps (exported), continued on linux-docs "
            "with another data order: a start already good at the target, as a released model is; 40 steps of "
            "8 x 128 tokens, warmup 5%, cosine",
            "runs": _sweep(work, "strong"),
        },
    }
    for sweep in sweeps.values():
        if sweep["runs"]:
            sweep["best"] = min(sweep["runs"], key=lambda r: r["final_val_loss"])
    if any(sweep["runs"] for sweep in sweeps.values()):  # SWEEP=0 ran none: the recorded sweep stays
        (out / "finetune-sweep-cpu-2core.json").write_text(json.dumps({**sweeps, "provenance": meta}, indent=2) + "\n")
    if not (work / "e2e-scratch-core.json").is_file():
        return  # the end-to-end runs did not finish
    e2e = {}
    for name in ("init", "init-far", "near", "scratch"):
        run = work / f"e2e-{name}"
        if not (work / f"e2e-{name}-core.json").is_file():
            continue
        core = json.loads((work / f"e2e-{name}-core.json").read_text())
        e2e[name] = {
            "evals": _evals(run),
            "core": core.get("core"),
            "tasks": {task: row.get("accuracy") for task, row in core.get("tasks", {}).items()},
        }
    eval_path = json.loads((work / "start-hf-eval.json").read_text())
    (out / "finetune-e2e-cpu-2core.json").write_text(
        json.dumps(
            {
                "what": "on linux-docs, 8 x 128 tokens per step, GPT-2 BPE for all; validation loss on 64 windows of 128: "
                "init = --init-from the tiny pretrained on the sample with --init-from's defaults; init-far = the same "
                "start with the scratch run's settings (muon, 4e-3, cosine); near = --init-from a tiny pretrained on "
                "linux-docs for 200 steps, with the defaults; scratch = the same tiny from scratch (its defaults)",
                "runs": e2e,
                "lmtrain_eval_of_start": {
                    "whole_split": eval_path.get("nll_per_token"),
                    "windows_64": json.loads((work / "start-hf-eval-windows.json").read_text())["nll_per_token"],
                },
                "sample_tokens_on_linux_docs": json.loads((work / "overlap.json").read_text()),
                "provenance": meta,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
