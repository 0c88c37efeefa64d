"""A recipe race: several training recipes on the same data for the same tokens, several seeds, one evaluation.

A recipe is a set of training keys on top of a shared base run (preset, data, batch, steps): a built-in one
(`lmtrain`: the defaults; `nanogpt`: nanoGPT's `train.py` settings as lmtrain keys) or a TOML file of keys. Each
(recipe, seed) trains with `lmtrain train` and is scored by `lmtrain eval RUN --split valid` (the per-token loss
over the whole split, at the training window), so every recipe is judged by the same measurement.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmtrain.config import read_toml
from lmtrain.defaults import MIN_LR_DIVISOR, NANOGPT_LR
from lmtrain.errors import ConfigError
from lmtrain.model.registry import SAVED_DEFAULT_ARCH

BUILTIN: Mapping[str, Mapping[str, Any]] = {
    "lmtrain": {},
    "gpt2": {"arch": "gpt2"},
    "modern": {"arch": "modern"},
    "nanogpt": {
        "arch": "gpt2",
        "optimizer": "adamw",
        "lr": NANOGPT_LR,
        "min_lr": NANOGPT_LR / MIN_LR_DIVISOR,
        "weight_decay": 0.1,
        "beta1": 0.9,
        "beta2": 0.95,
        "grad_clip": 1.0,
        "schedule": "cosine",
    },
}
"""`lmtrain`: no keys, the defaults. `gpt2` and `modern`: the defaults with that architecture. `nanogpt`: nanoGPT's train.py recipe (AdamW, betas 0.9/0.95, weight decay 0.1
on 2-D tensors, gradient clip 1.0, linear warmup then cosine to lr/10) at the LR that did best for AdamW on the
sample (1e-3: 6e-4, nanoGPT's own for GPT-2 124M, and 2e-3 did no better); warmup and dropout as the run gives them."""


def load_recipe(spec: str) -> tuple[str, dict[str, Any]]:
    """(name, keys) of a built-in recipe or of a TOML file of `lmtrain train` keys."""
    if spec in BUILTIN:
        return spec, dict(BUILTIN[spec])
    path = Path(spec)
    if path.suffix == ".toml":
        keys = {k.replace("-", "_"): v for k, v in read_toml(path).items()}
        keys.pop("out", None)
        return path.stem, keys
    raise ConfigError(f"unknown recipe {spec!r}; give {', '.join(BUILTIN)} or a .toml file of lmtrain train keys")


def _argv(keys: Mapping[str, Any]) -> list[str]:
    """`lmtrain train` flags for flat keys."""
    argv = []
    for key, value in keys.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def race(
    recipes: Sequence[str],
    *,
    seeds: Sequence[int],
    base: Mapping[str, Any],
    out: Path,
    run: Callable[[list[str]], int],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every recipe with every seed on `base` (flat keys) into `out`, score each, and summarise.

    `run` is `lmtrain`'s main function (argv -> exit code), called in this process."""
    chosen = [load_recipe(spec) for spec in recipes]
    if len({name for name, _ in chosen}) != len(chosen):
        raise ConfigError("two recipes have the same name; rename one of the files")
    rows = []
    for seed in seeds:
        for name, keys in chosen:
            folder = out / f"{name}-seed{seed}"
            train = ["train", *_argv({**base, **keys, "seed": seed}), "--out", str(folder)]
            with contextlib.redirect_stdout(io.StringIO()):
                code = run(train)
            if code != 0:
                raise ConfigError(f"recipe {name} with seed {seed} did not train (exit code {code}); see {folder}")
            score = io.StringIO()
            data = ["--data-dir", str(base["data_dir"])] if base.get("data_dir") else []
            device = ["--device", str(base.get("device", "auto"))]
            with contextlib.redirect_stdout(score):
                run(["eval", str(folder), "--split", "valid", *device, *data, "--json"])
            loss = json.loads(score.getvalue())["nll_per_token"]
            rows.append({"recipe": name, "seed": seed, "val_loss": loss, "keys": keys, **_run_facts(folder)})
            log(f"{name:<12} seed {seed:<6} validation loss {loss:.4f}")
    return {"bench": "recipe", "base": dict(base), "seeds": list(seeds), "runs": rows, "summary": summarise(rows)}


def _run_facts(folder: Path) -> dict[str, Any]:
    """The architecture, parameters and median training tokens/s of a finished run folder."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    start = next(r for r in records if r["event"] == "start")
    speeds = [r["tokens_per_s"] for r in records if r["event"] == "step" and r.get("tokens_per_s")]
    arch = json.loads((folder / "config.json").read_text())["model"].get("arch", SAVED_DEFAULT_ARCH)
    return {"arch": arch, "params": start["parameters"], "tokens_per_s": statistics.median(speeds) if speeds else None}


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per recipe: the mean validation loss over its seeds, the standard deviation, the best and the worst, with its
    architecture, parameters and median tokens/s."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by.setdefault(row["recipe"], []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, runs in by.items():
        losses = [r["val_loss"] for r in runs]
        speeds = [r["tokens_per_s"] for r in runs if r.get("tokens_per_s")]
        out[name] = {
            "mean": statistics.fmean(losses),
            "std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
            "min": min(losses),
            "max": max(losses),
            "seeds": len(losses),
            "arch": runs[0].get("arch"),
            "params": runs[0].get("params"),
            "tokens_per_s": statistics.fmean(speeds) if speeds else None,
        }
    return out


def table(result: Mapping[str, Any]) -> list[str]:
    """The race as text: one row per recipe, its loss for each seed, the mean and the spread."""
    seeds = result["seeds"]
    losses = {(r["recipe"], r["seed"]): r["val_loss"] for r in result["runs"]}
    lines = [
        "recipe        " + "".join(f"seed {s:<7}" for s in seeds) + "  mean     std      arch    params      tok/s"
    ]
    for name, s in sorted(result["summary"].items(), key=lambda kv: kv[1]["mean"]):
        cells = "".join(f"{losses[(name, seed)]:<12.4f}" for seed in seeds)
        speed = f"{s['tokens_per_s']:>9.0f}" if s.get("tokens_per_s") else f"{'-':>9}"
        facts = f"{s.get('arch') or '-':<7} {s.get('params') or 0:>10,} {speed}"
        lines.append(f"{name:<14}{cells}  {s['mean']:.4f}   {s['std']:.4f}   {facts}")
    return lines
