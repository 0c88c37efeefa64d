"""The LR sweep behind PRESET_LR: for each preset, architecture and optimizer, a grid of peak LRs around today's
default trained on the same data for the same tokens (one seed), then the best `--finalists` again with a second seed,
every run scored by `lmtrain eval --split valid` (through `lmtrain bench recipe`). The LR with the lowest mean over
both seeds is chosen; `preset_lr` lists the Muon choices (the default optimizer) in the form of `defaults.PRESET_LR`.

Usage (on a GPU, linux-docs prepared with GPT-2 BPE):
  python bench/lr_sweep.py --dataset text --data-dir ../shared/data/linux-docs --presets small base \
      --tokens 20000000 --out bench/results/lr-sweep-<device>.json
  python bench/lr_sweep.py --smoke --out /tmp/sweep.json   # the whole flow on the CPU in seconds (the suite runs it)
Uses `lmtrain` on PATH, else `python3 -m lmtrain`; LMTRAIN=... overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def lmtrain() -> list[str]:
    if os.environ.get("LMTRAIN"):
        return shlex.split(os.environ["LMTRAIN"])
    found = shutil.which("lmtrain")
    return [found] if found else [sys.executable, "-m", "lmtrain"]


def default_lr(arch: str, preset: str) -> float:
    """Today's PRESET_LR entry (the sweep's centre), from `lmtrain presets --json --arch ARCH`."""
    out = subprocess.run(
        [*lmtrain(), "presets", "--json", "--arch", arch], capture_output=True, text=True, check=True
    ).stdout
    table = json.loads(out)
    if preset not in table:
        raise SystemExit(f"lr_sweep: no preset {preset} for --arch {arch} in `lmtrain presets --json`")
    return float(table[preset]["lr"])


def race(recipes: list[Path], seeds: list[int], common: list[str], work: Path) -> dict[str, Any]:
    """`lmtrain bench recipe` over `recipes` and `seeds`; its JSON."""
    out = work / "race.json"
    cmd = [*lmtrain(), "bench", "recipe", *map(str, recipes), "--seeds", *map(str, seeds), *common]
    cmd += ["--workdir", str(work / "runs"), "--out", str(out)]
    print("==", " ".join(cmd[-12:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def sweep_group(
    preset: str, arch: str, optimizer: str, *, factors: list[float], finalists: int, common: list[str], work: Path
) -> dict[str, Any]:
    """One preset x architecture x optimizer: the grid with seed 1, then the finalists with seed 2."""
    centre = default_lr(arch, preset)
    recipes = {}
    for factor in factors:
        lr = float(f"{centre * factor:.3g}")
        path = work / f"{arch}-{optimizer}-lr{lr:g}.toml"
        path.write_text(f'arch = "{arch}"\noptimizer = "{optimizer}"\nlr = {lr!r}\n')
        recipes[path.stem] = (path, lr)
    group = [*common, "--preset", preset]
    first = race([p for p, _ in recipes.values()], [1], group, work / "grid")
    ranked = sorted(first["summary"], key=lambda name: first["summary"][name]["mean"])
    chosen = ranked[:finalists]
    second = race([recipes[name][0] for name in chosen], [2], group, work / "finalists")
    means = {name: (first["summary"][name]["mean"] + second["summary"][name]["mean"]) / 2 for name in chosen}
    best = min(means, key=means.__getitem__)
    return {
        "preset": preset,
        "arch": arch,
        "optimizer": optimizer,
        "default_lr": centre,
        "grid": {name: {"lr": recipes[name][1], "val_loss_seed1": first["summary"][name]["mean"]} for name in ranked},
        "finalists": {name: {"lr": recipes[name][1], "mean_val_loss_2_seeds": means[name]} for name in chosen},
        "chosen_lr": recipes[best][1],
        "runs": first["runs"] + second["runs"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="micro, modern + Muon, 2 LRs, 2 steps, the sample")
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--archs", nargs="+", default=["modern", "gpt2"])
    parser.add_argument("--optimizers", nargs="+", default=["muon", "adamw"])
    parser.add_argument("--factors", nargs="+", type=float, default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--finalists", type=int, default=2, help="LRs run again with a second seed (default 2)")
    parser.add_argument("--tokens", type=int, default=20_000_000, help="training tokens per run (default 20M)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dataset", default="text")
    parser.add_argument("--data-dir", default="../shared/data/linux-docs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.smoke:
        args.presets, args.archs, args.optimizers, args.factors, args.finalists = (
            ["micro"],
            ["modern"],
            ["muon"],
            [
                0.5,
                1.0,
            ],
            1,
        )
        args.tokens, args.batch_size, args.seq_len, args.dataset, args.data_dir = 256, 4, 32, "sample", None
        args.device = "cpu"
    steps = max(2, args.tokens // (args.batch_size * args.seq_len))
    common = ["--dataset", args.dataset, "--device", args.device, "--max-steps", str(steps)]
    common += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
    if args.data_dir:
        common += ["--data-dir", str(Path(args.data_dir).resolve())]
    groups = []
    with tempfile.TemporaryDirectory(prefix="lr-sweep-") as tmp:
        for preset in args.presets:
            for arch in args.archs:
                for optimizer in args.optimizers:
                    work = Path(tmp) / f"{preset}-{arch}-{optimizer}"
                    work.mkdir()
                    groups.append(
                        sweep_group(
                            preset,
                            arch,
                            optimizer,
                            factors=args.factors,
                            finalists=args.finalists,
                            common=common,
                            work=work,
                        )
                    )
    preset_lr: dict[str, dict[str, float]] = {}
    for g in groups:
        if g["optimizer"] == "muon":
            preset_lr.setdefault(g["arch"], {})[g["preset"]] = g["chosen_lr"]
    result = {
        "bench": "lr_sweep",
        "smoke": args.smoke,
        "tokens_per_run": steps * args.batch_size * args.seq_len,
        "steps": steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "groups": groups,
        "preset_lr": preset_lr,
        "command": " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
