"""`lmtrain bench recipe`: every recipe trains with every seed on the same data and is scored by one evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LMTRAIN
from lmtrain.bench.recipe import BUILTIN, load_recipe, summarise, table
from lmtrain.defaults import PRESET_LR
from lmtrain.errors import ConfigError


@pytest.mark.slow
def test_a_race_trains_each_recipe_with_each_seed_and_scores_them_alike(sample_dir: Path, tmp_path: Path) -> None:
    import subprocess

    fast = tmp_path / "fast.toml"
    fast.write_text('arch = "gpt2"\noptimizer = "adamw"\nlr = 2e-3\nwarmup = 0\n')
    out = tmp_path / "race.json"
    cmd = [
        LMTRAIN,
        "bench",
        "recipe",
        "lmtrain",
        str(fast),
        "--preset",
        "micro",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--seeds",
        "3",
        "4",
        "--data-dir",
        str(sample_dir),
        "--device",
        "cpu",
        "--workdir",
        str(tmp_path / "runs"),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert {(r["recipe"], r["seed"]) for r in result["runs"]} == {
        (name, seed) for name in ("lmtrain", "fast") for seed in (3, 4)
    }
    for row in result["runs"]:  # each run trained with its recipe's settings and its seed
        config = json.loads((tmp_path / "runs" / f"{row['recipe']}-seed{row['seed']}" / "config.json").read_text())
        expected = {"lmtrain": ("muon", PRESET_LR["modern"]["micro"]), "fast": ("adamw", 2e-3)}[row["recipe"]]
        optimizer = config["train"]["optimizer"]
        assert (optimizer["name"], optimizer["lr"], config["train"]["seed"]) == (
            *expected,
            row["seed"],
        )
        assert config["train"]["max_steps"] == 3 and 0 < row["val_loss"] < 11.5
        arch = {"lmtrain": "modern", "fast": "gpt2"}[row["recipe"]]
        assert row["arch"] == config["model"]["arch"] == arch and row["tokens_per_s"] > 0
        assert row["params"] == {"modern": 3_315_200, "gpt2": 3_320_640}[arch]
    means = {name: s["mean"] for name, s in result["summary"].items()}
    for name, mean in means.items():
        losses = [r["val_loss"] for r in result["runs"] if r["recipe"] == name]
        assert mean == pytest.approx(sum(losses) / 2)
    assert "mean" in proc.stderr and "fast" in proc.stderr and "3,320,640" in proc.stderr


def test_recipes_are_built_in_names_or_toml_files(tmp_path: Path) -> None:
    assert load_recipe("nanogpt") == ("nanogpt", dict(BUILTIN["nanogpt"]))
    file = tmp_path / "mine.toml"
    file.write_text('learning-rate-is-not-a-key = 1\nmax-steps = 9\nout = "x"\n')
    name, keys = load_recipe(str(file))
    assert name == "mine" and keys == {"learning_rate_is_not_a_key": 1, "max_steps": 9}  # train rejects the unknown key
    with pytest.raises(ConfigError, match="unknown recipe 'sgd'"):
        load_recipe("sgd")


def test_the_summary_gives_each_recipe_its_mean_and_spread() -> None:
    rows = [
        {"recipe": "a", "seed": 1, "val_loss": 7.0},
        {"recipe": "a", "seed": 2, "val_loss": 7.2},
        {"recipe": "b", "seed": 1, "val_loss": 6.5},
        {"recipe": "b", "seed": 2, "val_loss": 6.7},
    ]
    summary = summarise(rows)
    assert summary["a"]["mean"] == pytest.approx(7.1) and summary["b"]["std"] == pytest.approx(0.1414, abs=1e-4)
    lines = table({"seeds": [1, 2], "runs": rows, "summary": summary})
    assert lines[1].startswith("b ") and lines[2].startswith("a ")  # best first
