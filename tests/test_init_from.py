"""`lmtrain train --init-from PATH`: a run that starts from a trained model (a transformers folder or an lmtrain run)
computes exactly what PATH computes before its first step, takes its model and tokenizer from it, records where it
started, resumes exactly, exports with the released keys kept, and refuses bad input in one line with nothing
written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE, kill_9_once_saved, read_jsonl, step_losses
from lmtrain.cli import main

pytestmark = pytest.mark.slow


def _exported(run: Path, out: Path) -> Path:
    assert main(["export", str(run), "--out", str(out)]) == 0
    return out


def config_of(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _init_args(start: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--init-from",
        str(start),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--warmup",
        "1",
        "--sample-tokens",
        "0",
        "--log-every",
        "1",
        *extra,
    ]


def test_step_zero_validation_equals_what_the_start_computes(
    trained_modern_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before its first step the run's validation loss is the start's: `lmtrain eval PATH --windows 16` on the same
    windows, and the loss the trained run's own last checkpoint recorded on them; and `lmtrain eval` of the
    transformers folder equals that of the run."""
    hf = _exported(trained_modern_run, tmp_path / "hf")
    recorded = json.loads((trained_modern_run / "checkpoints" / "step_0000060" / "config.json").read_text())
    scored = []
    for start in (hf, trained_modern_run):  # a transformers folder and an lmtrain run
        capsys.readouterr()
        assert main(["eval", str(start), "--data-dir", str(SAMPLE), "--split", "valid", "--json"]) == 0
        scored.append(json.loads(capsys.readouterr().out)["nll_per_token"])
        out = tmp_path / f"run-{start.name}"
        assert main(_init_args(start, out, "--data-dir", str(SAMPLE), "--eval-windows", "16", "--max-steps", "3")) == 0
        evals = [r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "eval"]
        assert evals[0]["step"] == 0
        assert evals[0]["val_loss"] == pytest.approx(recorded["checkpoint"]["val_loss"], abs=1e-5)
        capsys.readouterr()
        seq_len = config_of(out)["data"]["seq_len"] or config_of(out)["model"]["max_seq_len"]
        windows = ["--context", str(seq_len), "--windows", "16", "--json"]
        assert main(["eval", str(start), "--data-dir", str(SAMPLE), "--split", "valid", *windows]) == 0
        same_windows = json.loads(capsys.readouterr().out)
        assert same_windows["nll_per_token"] == pytest.approx(evals[0]["val_loss"], abs=1e-5)
        assert same_windows["windows"] == 16 and same_windows["word_ppl"] is None
        assert step_losses(out)[0][1] < 9.0  # far below ln(V) = 10.8: the weights were loaded
        config = json.loads((out / "config.json").read_text())
        assert config["preset"] == "init-from"
        assert config["init_from"]["format"] == ("transformers" if start == hf else "lmtrain")
        assert config["model"]["n_kv_head"] == 1 and config["model"]["tie"] is False  # the model is the start's
        assert config["train"]["optimizer"]["name"] == "adamw"  # --init-from's defaults
    assert scored[0] == pytest.approx(scored[1], abs=1e-5)
    config = json.loads((tmp_path / "run-hf" / "config.json").read_text())
    sha = hashlib.sha256((hf / "model.safetensors").read_bytes()).hexdigest()
    assert config["init_from"]["weights_sha256"] == {"model.safetensors": sha}
    assert config["init_from"]["hf_config"]["model_type"] == "qwen3"
    assert main(["report", str(tmp_path / "run-hf")]) == 0
    html = (tmp_path / "run-hf" / "report.html").read_text()
    assert "started from" in html and sha in html and "at step 0" in html


def test_eval_every_0_spends_no_time_on_a_step_zero_evaluation(trained_modern_run: Path, tmp_path: Path) -> None:
    """--eval-every 0 is honoured from the first step: no evaluation before training (SmolLM2's 1,000 default
    windows took about 10 minutes on the 2-core CPU), only the final one."""
    out = tmp_path / "run"
    args = _init_args(trained_modern_run, out, "--data-dir", str(SAMPLE), "--max-steps", "2", "--eval-every", "0")
    assert main(args) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "eval"] == [2]


def test_export_of_a_continued_run_keeps_the_released_keys(trained_modern_run: Path, tmp_path: Path) -> None:
    hf = _exported(trained_modern_run, tmp_path / "hf")
    released = json.loads((hf / "config.json").read_text())
    released |= {"max_position_embeddings": 4096, "bos_token_id": 7, "custom_key": "kept", "torch_dtype": "bfloat16"}
    (hf / "config.json").write_text(json.dumps(released))  # as a release would have them
    out = tmp_path / "run"
    same_width = ("--d-model", str(released["hidden_size"]))  # a model flag that agrees with the start is fine
    flags = ("--data-dir", str(SAMPLE), "--max-steps", "2", "--dropout", "0.1", "--seq-len", "64", *same_width)
    assert main(_init_args(hf, out, *flags)) == 0
    assert json.loads((out / "config.json").read_text())["model"]["dropout"] == 0.1  # what may change
    again = json.loads((_exported(out, tmp_path / "again") / "config.json").read_text())
    for key in ("max_position_embeddings", "bos_token_id", "custom_key", "torch_dtype", "architectures"):
        assert again[key] == released[key], key


def test_a_continued_run_resumes_exactly_after_kill_9(trained_modern_run: Path, tmp_path: Path) -> None:
    hf = _exported(trained_modern_run, tmp_path / "hf")
    args = ("--data-dir", str(SAMPLE), "--max-steps", "12", "--save-every", "3", "--eval-every", "3")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(_init_args(hf, whole, *args)) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmtrain", *_init_args(hf, killed, *args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_9_once_saved(proc, killed / "checkpoints" / "step_0000003")
    assert main(["train", "--resume", str(killed), "--sample-tokens", "0"]) == 0
    assert dict(step_losses(killed)) == dict(step_losses(whole))  # the steps after the kill again, exactly


def test_conflicting_and_bad_input_is_one_line_and_writes_nothing(
    trained_modern_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = _exported(trained_modern_run, tmp_path / "hf")
    out = tmp_path / "never"
    empty = tmp_path / "empty"
    empty.mkdir()
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    tokenizer = tmp_path / "tok"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((SAMPLE / "wiki.valid.raw").read_text())
    assert main(["tokenizer", "train", str(corpus), "--vocab-size", "600", "--out", str(tokenizer)]) == 0
    cases = {
        "--preset tiny and --init-from": ["--preset", "tiny"],
        "--d-model 48 conflicts with --init-from": ["--d-model", "48"],
        "is not the tokenizer of --init-from": ["--tokenizer", str(tokenizer)],
    }
    for message, extra in cases.items():
        assert main(_init_args(hf, out, "--data-dir", str(SAMPLE), *extra)) == 2
        assert message in capsys.readouterr().err
    for start, message in (
        (empty, "neither a checkpoint folder"),
        (unknown, "model_type='mamba'"),
        (tmp_path / "missing", "no such file or folder"),
    ):
        assert main(_init_args(start, out, "--data-dir", str(SAMPLE))) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--init-from", str(hf), "--resume", str(trained_modern_run)]) == 2
    assert "--init-from starts a new run and --resume" in capsys.readouterr().err
    assert not out.exists()
