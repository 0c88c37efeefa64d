"""recipes/*.toml: every shipped recipe parses, builds its model and passes the doctor without an ERROR."""

from __future__ import annotations

import dataclasses
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


def test_the_recipes_users_want_are_shipped() -> None:
    assert {p.stem for p in RECIPES} == {
        "wt2-tiny",
        "wt103-small",
        "wt103-base",
        "wt103-small-modern",
        "wt103-base-modern",
    }


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
