"""recipes/*.toml: every shipped recipe parses, builds its model and passes the doctor without an ERROR."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from conftest import REPO
from lmtrain.config import build_run_config, read_toml
from lmtrain.data.datasets import DataPaths
from lmtrain.doctor.examine import examine
from lmtrain.model.registry import build_model
from lmtrain.train.data import load_training_data

RECIPES = sorted((REPO / "recipes").glob("*.toml"))


def _number(text: str) -> float:
    """'36,000' -> 36000.0, '1.2B' -> 1.2e9, '117M' -> 1.17e8."""
    scale = {"K": 1e3, "k": 1e3, "M": 1e6, "B": 1e9}.get(text[-1], 1.0)
    return float(text.rstrip("KkMB").replace(",", "")) * scale


def test_the_recipes_users_want_are_shipped() -> None:
    assert {p.stem for p in RECIPES} == {
        "wt2-tiny",
        "wt103-small",
        "wt103-base",
        "wt103-small-modern",
        "wt103-base-modern",
    }


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_what_a_recipe_says_is_what_it_runs(path: Path) -> None:
    """The comment's figures follow from the recipe's keys: the parameters, the tokens per step and its micro-batches,
    the steps and tokens of its epochs; a `-modern` recipe is its GPT-2 twin's run with the modern block; every
    result file it cites exists."""
    text = " ".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
    keys = {k.replace("-", "_"): v for k, v in read_toml(path).items()}
    keys.pop("out")
    cfg = build_run_config(keys)
    params = re.search(r"\((\d+)M parameters\)|\(GPT-2 (\d+)M\)", text)
    assert params and round(cfg.model.param_counts()["total"] / 1e6) == int(params.group(1) or params.group(2))
    shape = re.search(r"of (WikiText-\S+)'s ~([\d.]+[MB]) GPT-2 tokens at (\d+) x (\d+)", text)
    assert shape, text
    corpus, tokens = shape.group(1), _number(shape.group(2))
    assert corpus == {"wikitext-2": "WikiText-2", "wikitext-103": "WikiText-103"}[cfg.data.dataset]
    assert (int(shape.group(3)), int(shape.group(4))) == (cfg.train.batch_size, cfg.seq_len)
    micro = re.search(r"\((\d+) micro-batches of (\d+)", text)
    layout = cfg.train.layout(1)
    assert (
        (int(micro.group(1)), int(micro.group(2))) == (layout.accumulation, layout.micro)
        if micro
        else layout.accumulation == 1
    )
    steps, total = re.search(r"about ([\d,]+) steps, ([\d.]+[MB]) tokens", text).groups()
    per_step = cfg.train.batch_size * cfg.seq_len
    assert cfg.train.epochs * tokens / per_step == pytest.approx(_number(steps), rel=0.02)
    assert cfg.train.epochs * tokens == pytest.approx(_number(total), rel=0.03)  # rounded to two figures
    for cited in re.findall(r"bench/results/\s*([\w.-]+\.json)", text):
        assert (REPO / "bench" / "results" / cited).is_file(), cited
    if path.stem.endswith("-modern"):
        twin = {k.replace("-", "_"): v for k, v in read_toml(path.with_name(path.stem[:-7] + ".toml")).items()}
        same = {k: v for k, v in keys.items() if k not in ("arch", "dropout")}
        assert same == {k: v for k, v in twin.items() if k not in ("arch", "out", "dropout")}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_parses_builds_and_passes_the_doctor(
    path: Path, sample_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    keys = {k.replace("-", "_"): v for k, v in read_toml(path).items()}
    assert keys.pop("out").startswith("../runs/")
    cfg = build_run_config(keys)
    assert cfg.model.arch == ("modern" if path.stem.endswith("-modern") else "gpt2")  # each names its architecture
    assert cfg.data.dataset in ("wikitext-2", "wikitext-103") and cfg.seq_len == cfg.model.max_seq_len
    with torch.device("meta"):
        build_model(cfg.model)  # the model builds (on the meta device: no memory)
    text = path.read_text()
    assert f"lmtrain train --config recipes/{path.name}" in text and "tokens/s" in text and "Aims at" in text
    # The WikiText train splits cannot be downloaded here: the doctor examines the recipe on the sample instead.
    local = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(sample_dir), no_download=True))
    data = load_training_data(local, DataPaths(sample_dir, None, tmp_path, download=False), log=lambda _: None)
    # The recipes are for a GPU: the doctor's memory check gets an H100's 80 GB instead of this machine's RAM.
    monkeypatch.setattr("lmtrain.doctor.examine.device_memory", lambda device: 80 * 10**9)
    report = examine(local, data, measure=False)
    assert report.errors == [], [f.message for f in report.errors]
