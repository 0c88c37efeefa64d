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


def main(work: Path, out: Path) -> None:
    sweep = []
    for run in sorted(work.glob("sweep-*")):
        _, opt, lr = run.name.split("-", 2)
        evals = _evals(run)
        sweep.append(
            {
                "optimizer": opt,
                "lr": float(lr),
                "start_val_loss": evals[0]["val_loss"],
                "final_val_loss": evals[-1]["val_loss"],
            }
        )
    best = min(sweep, key=lambda r: r["final_val_loss"])
    meta = provenance() | {"command": "bench/finetune.sh"}
    (out / "finetune-sweep-cpu-2core.json").write_text(
        json.dumps(
            {
                "what": "--init-from a tiny pretrained on the sample (exported) on linux-docs, 40 steps of 8 x 128 tokens, warmup 5%, cosine",
                "runs": sweep,
                "best": best,
                "provenance": meta,
            },
            indent=2,
        )
        + "\n"
    )
    if not (work / "e2e-scratch-core.json").is_file():
        return  # the end-to-end runs did not finish
    e2e = {}
    for name in ("init", "scratch"):
        run = work / f"e2e-{name}"
        core = json.loads((work / f"e2e-{name}-core.json").read_text())
        e2e[name] = {
            "evals": _evals(run),
            "core": core.get("core"),
            "tasks": {t["name"]: t.get("accuracy") for t in core.get("tasks", [])},
        }
    eval_path = json.loads((work / "start-hf-eval.json").read_text())
    (out / "finetune-e2e-cpu-2core.json").write_text(
        json.dumps(
            {
                "what": "continued (--init-from the tiny pretrained on the sample) against the same tiny from scratch on linux-docs, "
                "8 x 128 tokens per step, GPT-2 BPE for both; validation loss on 64 windows of 128",
                "runs": e2e,
                "lmtrain_eval_of_start": {"nll_per_token": eval_path.get("nll_per_token")},
                "provenance": meta,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
