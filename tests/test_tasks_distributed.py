"""Benchmark tasks under torchrun: two ranks, each scoring every other item, get every item right or wrong exactly as
one process does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import read_jsonl
from lmtrain.cli import main
from task_helpers import write_tasks
from test_distributed import finish, launch

pytestmark = [pytest.mark.xdist_group("ranks"), pytest.mark.slow]


def test_two_ranks_score_every_item_as_one_process(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LMTRAIN_DATA_DIR", raising=False)
    toml = write_tasks(tmp_path / "tasks", n=15)  # an odd count: the ranks' shares differ in size
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        shutil.copytree(trained_run, folder)
    common = ["--tasks", str(toml), "--device", "cpu", "--no-download"]
    assert main(["eval", str(one), *common, "--items-out", str(tmp_path / "one.jsonl")]) == 0
    results = finish(launch(2, ["eval", str(two), *common, "--items-out", str(tmp_path / "two.jsonl")]))
    assert [code for code, _, _ in results] == [0, 0], results
    single, ranks = read_jsonl(tmp_path / "one.jsonl"), read_jsonl(tmp_path / "two.jsonl")
    assert len(single) == 45 and single == ranks
    assert (two / "tasks.json").is_file() and "repeat_schema" in results[0][1] and results[1][1] == ""
