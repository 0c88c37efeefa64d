"""The MLP race's learning-rate check (bench/mlp_race.sh): gathers `lmtrain bench recipe` results run at several
learning rates into one table per data set, each MLP at each rate (mean over seeds), each MLP's best rate, and
SwiGLU's cost against ReLU² when both run at their best.

Usage: python bench/mlp_lr_check.py --out FILE DATA=RECIPE_JSON... (a data set's name, then one of its race files;
a name may be given several times).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

PRESET_LR = 0.004
"""`tiny`'s LR for the modern block, which a recipe without an `lr` key trains at."""


def table(races: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (MLP, LR): the seeds' validation losses and their mean; per MLP: the best LR; SwiGLU's cost at the best."""
    losses: dict[tuple[str, float], dict[int, float]] = {}
    for race in races:
        for run in race["runs"]:
            key = (run["keys"]["mlp"], float(run["keys"].get("lr", PRESET_LR)))
            losses.setdefault(key, {})[run["seed"]] = run["val_loss"]
    rows = [
        {"mlp": mlp, "lr": lr, "seeds": dict(sorted(by_seed.items())), "mean": statistics.fmean(by_seed.values())}
        for (mlp, lr), by_seed in sorted(losses.items())
    ]
    best = {mlp: min((r for r in rows if r["mlp"] == mlp), key=lambda r: r["mean"]) for mlp in {r["mlp"] for r in rows}}
    out: dict[str, Any] = {
        "runs": rows,
        "best": {m: {"lr": b["lr"], "mean": b["mean"]} for m, b in sorted(best.items())},
    }
    if {"relu2", "swiglu"} <= best.keys():
        out["swiglu_cost_at_best"] = best["swiglu"]["mean"] - best["relu2"]["mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("races", nargs="+", metavar="DATA=FILE")
    args = parser.parse_args()
    by_data: dict[str, list[dict[str, Any]]] = {}
    for spec in args.races:
        name, _, file = spec.partition("=")
        by_data.setdefault(name, []).append(json.loads(Path(file).read_text()))
    result = {
        "bench": "mlp-lr-check",
        "preset_lr": PRESET_LR,
        "data": {name: table(races) for name, races in by_data.items()},
        "provenance": [race["provenance"] for races in by_data.values() for race in races],
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, t in result["data"].items():
        print(name)
        for r in t["runs"]:
            seeds = "  ".join(f"{loss:.4f}" for loss in r["seeds"].values())
            print(f"  {r['mlp']:<7} lr {r['lr']:<7} {seeds}  mean {r['mean']:.4f}")
        if "swiglu_cost_at_best" in t:
            print(f"  SwiGLU's cost, each at its best LR: {t['swiglu_cost_at_best']:+.4f} nats")


if __name__ == "__main__":
    main()
