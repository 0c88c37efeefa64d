"""Benchmark tasks behind flags: `lmtrain eval --tasks`, bad input to it, `lmtrain train --tasks` (metrics, tasks.json,
the doctor, the report, compare), `lmtrain bench tasks`, and two ranks scoring as one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST_MODEL, read_jsonl, train_args
from lmtrain.cli import main
from lmtrain.data.datasets import DataPaths
from lmtrain.model.config import ModernConfig
from lmtrain.model.registry import build_model
from lmtrain.tasks.evaluate import load_tasks, score_tasks
from lmtrain.tasks.locate import TaskPaths
from lmtrain.tasks.results import TASKS_FILE
from lmtrain.tasks.spec import TaskTable, parse_tasks
from task_helpers import repeat_items, write_jsonl, write_tasks


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests make their own task files: the data mirror (and the network) must not stand in for them."""
    monkeypatch.delenv("LMTRAIN_DATA_DIR", raising=False)


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.mark.slow  # the trained model
def test_eval_tasks_prints_json_records_the_step_and_lists_every_item(run_copy: Path, tmp_path: Path, capsys) -> None:
    toml = write_tasks(tmp_path / "tasks")
    items = tmp_path / "items.jsonl"
    args = ["eval", str(run_copy), "--tasks", str(toml), "--json", "--items-out", str(items), "--no-download"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["tasks"]) == {"repeat_multiple_choice", "repeat_schema", "repeat_language_modeling"}
    first = out["tasks"]["repeat_schema"]
    assert first["items"] == 12 and first["baseline"] == 50.0 and 0 <= first["accuracy"] <= 1
    assert first["centred"] == pytest.approx((first["accuracy"] - 0.5) / 0.5)
    assert out["core"] is None and out["bos"] == "'<|endoftext|>' (id 50256)" and out["step"] == 60
    recorded = json.loads((run_copy / TASKS_FILE).read_text())
    assert list(recorded) == ["60"] and recorded["60"]["tasks"] == out["tasks"]
    rows = read_jsonl(items)
    assert len(rows) == 36 and {r["task"] for r in rows} == set(out["tasks"])
    assert sorted(r["line"] for r in rows if r["task"] == "repeat_schema") == list(range(12))
    right = sum(r["correct"] for r in rows if r["task"] == "repeat_schema")
    assert right == first["correct"]
    assert main(["eval", str(run_copy), "--tasks", str(toml), "--max-per-task", "5", "--no-download"]) == 0
    text = capsys.readouterr().out
    assert "repeat_schema" in text and "at most 5 items per task" in text
    recorded = json.loads((run_copy / TASKS_FILE).read_text())
    assert list(recorded) == ["60"] and recorded["60"]["max_per_task"] == 5  # the step's latest scoring replaces it


def _fails(args: list[str], capsys, *fragments: str) -> None:
    code = main(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_bad_task_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"  # never opened: every task error comes before the model is loaded
    toml = write_tasks(tmp_path / "tasks")
    base = ["eval", str(run), "--no-download", "--cache-dir", str(tmp_path / "cache")]
    _fails(
        [*base, "--tasks", "hellaswagg"],
        capsys,
        "unknown task 'hellaswagg'",
        "known: core, chatcore, hellaswag_zeroshot",
    )
    _fails([*base, "--tasks", str(toml), "--max-per-task", "0"], capsys, "--max-per-task 0 must be at least 1")
    _fails([*base, "--tasks", str(toml), "--max-per-task", "-3"], capsys, "--max-per-task -3 must be at least 1")
    _fails([*base, "--tasks", str(toml), "--max-per-task", "2"], capsys, "is 2-shot", "at least 3")
    _fails([*base, "--tasks", "core"], capsys, "no file for task", "looked in", "--no-download", "--tasks-dir")
    bad = tmp_path / "tasks" / "repeat_schema.jsonl"
    bad.write_text(bad.read_text() + "{not json\n")
    _fails([*base, "--tasks", str(toml)], capsys, "repeat_schema.jsonl:13", "is not JSON")
    bad.write_text('{"context_options": ["a", "b"], "continuation": "c", "gold": 5}\n')
    _fails([*base, "--tasks", str(toml)], capsys, "repeat_schema.jsonl:1", "gold=5 is out of range")
    bad.write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\n')
    _fails([*base, "--tasks", str(toml)], capsys, "has no context_options, continuation", "it has query, choices")
    bad.write_text("\n")
    _fails([*base, "--tasks", str(toml)], capsys, "holds no items")
    bad.write_bytes(b'{"query": "q"}\n\x89PNG\r\n\x1a\n\x00\x00\xff binary')  # a stray binary file named .jsonl
    _fails([*base, "--tasks", str(toml)], capsys, "repeat_schema.jsonl:2", "is not UTF-8 text")
    _fails(
        [*base, "--tasks", "core", "--tasks-dir", str(tmp_path / "no-such-dir")], capsys, "no-such-dir does not exist"
    )
    _fails([*base, "--tasks", "core", "--tasks-dir", str(bad)], capsys, "is not a folder")
    missing = tmp_path / "missing.toml"
    missing.write_text('[[task]]\nname = "x"\nfile = "x.jsonl"\ntype = "schema"\nshots = 0\ndelimiter = " "\n')
    _fails([*base, "--tasks", str(missing)], capsys, "missing.toml: task 1 (x) has no baseline")
    core = tmp_path / "core" / "commonsense_reasoning"
    core.mkdir(parents=True)
    write_jsonl(core / "copa.jsonl", repeat_items()["multiple_choice"])
    _fails(
        [*base, "--tasks", "copa", "--tasks-dir", str(tmp_path / "core")],
        capsys,
        "copa.jsonl (task copa)",
        "not the pinned",
    )
    assert not run.exists()


def test_core_is_the_mean_centred_score_over_the_core_tasks_scored_and_says_how_many(tmp_path: Path, tokenizer) -> None:
    """Tasks of the CORE table (here made-up files under CORE names) count towards CORE; a user's tasks do not."""
    toml = write_tasks(tmp_path)
    table_text = toml.read_text().replace('name = "repeat_multiple_choice"', 'name = "copa"')
    table_text = table_text.replace('name = "repeat_schema"', 'name = "winograd"')
    import tomllib

    core = [
        t
        for t in parse_tasks(tomllib.loads(table_text), "table", root=tmp_path, core=True)
        if t.name != "repeat_language_modeling"
    ]
    table = TaskTable({t.name: t for t in core}, 22)
    paths = TaskPaths(None, DataPaths(None, None, tmp_path / "cache", download=False))
    tasks = load_tasks(f"copa,winograd,{toml}", paths, None, table=table, log=lambda _m: None)
    torch.manual_seed(0)
    model = build_model(ModernConfig(vocab_size=50257, n_layer=1, n_head=2, d_model=128, d_ff=256, max_seq_len=64))
    report = score_tasks(model.eval(), tokenizer, tasks, device=torch.device("cpu"))
    centred = {t.name: t.centred for t in report.tasks}
    assert report.core_label == "CORE (2 of 22 tasks)" and report.core_covered == 2
    assert report.core == pytest.approx((centred["copa"] + centred["winograd"]) / 2)
    assert centred["copa"] == 1.0 and len(report.tasks) == 5  # the repeating model gets every multiple-choice item


@pytest.mark.slow  # a training run
def test_train_scores_the_tasks_on_schedule_and_the_report_and_compare_show_them(
    tmp_path: Path, sample_dir, capsys
) -> None:
    toml = write_tasks(tmp_path / "tasks")
    out = tmp_path / "run"
    args = train_args(
        sample_dir,
        out,
        "--max-steps",
        "8",
        "--tasks",
        str(toml),
        "--tasks-every",
        "4",
        "--tasks-max-per-task",
        "6",
        "--doctor",
        "warn",
    )
    assert main(args) == 0
    console = capsys.readouterr().out
    assert (
        "step 4 | 3 tasks | best" in console and "scorings of the benchmark tasks" in console
    )  # the doctor's estimate
    scored = [r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "tasks"]
    assert [r["step"] for r in scored] == [4, 8] and all(r["max_per_task"] == 6 for r in scored)
    assert set(scored[0]["accuracy"]) == {"repeat_multiple_choice", "repeat_schema", "repeat_language_modeling"}
    recorded = json.loads((out / TASKS_FILE).read_text())
    assert list(recorded) == ["4", "8"] and recorded["8"]["tasks"]["repeat_schema"]["items"] == 6
    assert recorded["4"]["tokens"] == scored[0]["tokens"] > 0
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "Benchmark tasks" in html and "GPT-2 124M" in html and (out / "report_plots" / "tasks.png").is_file()
    capsys.readouterr()
    assert main(["compare", str(out), str(out), "--out", str(tmp_path / "cmp.png")]) == 0
    assert "run  " in capsys.readouterr().out


def test_train_refuses_bad_tasks_before_it_starts(tmp_path: Path, sample_dir, capsys) -> None:
    out = tmp_path / "run"
    _fails(train_args(sample_dir, out, "--max-steps", "2", "--tasks", "nope"), capsys, "unknown task 'nope'")
    assert not (out / "checkpoints").exists()


@pytest.mark.slow  # times the reference too
def test_bench_tasks_reports_both_rates_their_ratio_and_identical_results(tmp_path: Path, capsys) -> None:
    toml = write_tasks(tmp_path / "tasks")
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "tasks",
        "--preset",
        "micro",
        "--tasks",
        str(toml),
        "--max-per-task",
        "12",
        "--no-download",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["identical"] is True and result["items_differing"] == [] and result["items"] == 36
    assert result["speedup"] == pytest.approx(result["reference_s"] / result["batched_s"], abs=0.005 + 1e-9)
    assert result["batched_items_per_s"] == pytest.approx(36 / result["batched_s"], rel=0.01)
    assert set(result["per_task"]) == {"repeat_multiple_choice", "repeat_schema", "repeat_language_modeling"}


def test_the_doctor_command_counts_the_scorings_of_the_tasks_in_its_time_estimate(
    tmp_path: Path, sample_dir, capsys
) -> None:
    toml = write_tasks(tmp_path / "tasks")
    base = ["doctor", *FAST_MODEL, "--data-dir", str(sample_dir), "--batch-size", "4", "--max-steps", "50", "--json"]
    assert main(base) == 0
    (alone,) = [f["message"] for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == "time"]
    assert main([*base, "--tasks", str(toml), "--tasks-every", "20"]) == 0
    (scored,) = [f["message"] for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == "time"]
    assert "benchmark" not in alone and "3 scorings of the benchmark tasks" in scored  # steps 20, 40 and the end
