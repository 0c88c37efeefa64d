"""Bad input to `lmtrain train`: one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST_MODEL, train_args
from lmtrain.cli import main


def _fails(capsys, args: list[str], *fragments: str) -> str:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert code == 2, captured.err + captured.out
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--preset", "huge"], ["unknown preset 'huge'"]),
        (["--dataset", "wikitext-7"], ["unknown dataset 'wikitext-7'"]),
        (["--lr", "0"], ["lr=0.0 must be > 0"]),
        (["--lr=-1e-3"], ["lr=-0.001 must be > 0"]),
        (["--batch-size", "0"], ["batch_size=0 must be > 0"]),
        (["--d-model", "0"], ["d_model=0 must be a positive integer"]),
        (["--n-head", "3"], ["d_model=32 must be a multiple of n_head=3"]),
        (["--max-steps", "-5"], ["max_steps=-5 must be > 0"]),
        (["--seq-len", "64"], ["seq_len=64 is longer than the model's max_seq_len=32"]),
        (["--batch-size", "6", "--micro-batch-size", "4"], ["micro_batch_size=4 does not divide batch_size=6"]),
        (["--epochs", "1", "--max-steps", "3"], ["--epochs or --max-steps, not both"]),
        (["--min-lr", "0.1"], ["min_lr=0.1 must be between 0 and lr=0.001"]),
        (["--warmup", "-1"], ["warmup=-1 must be >= 0"]),
        (["--max-steps", "5", "--warmup", "5"], ["warmup=5 is not shorter than the run's 5", "--allow-long-warmup"]),
        (["--device", "cuda"], ["CUDA is not available"]),
        (["--dtype", "fp16"], ["fp16 needs a GPU"]),
        (["--batch-size", "100000"], ["not one batch of 100000"]),
        (["--vocab-size", "1000"], ["has 50,257 ids, more than the model's vocab_size=1,000"]),
        (["--schedule", "step"], ["invalid choice: 'step'"]),
        (["--max-steps", "many"], ["max_steps='many' is not an integer"]),
        (["--log", "jsonl,csv"], ["log='jsonl,csv': unknown sink 'csv'"]),
        (["--log", "jsonl,jsonl"], ["a sink named twice"]),
        (["--eval-windows", "-1"], ["eval_windows=-1 must be >= 0"]),
        (["--on-nan", "ignore"], ["invalid choice: 'ignore'"]),
        (["--doctor", "loud"], ["invalid choice: 'loud'"]),
        (["--max-skipped-steps", "0"], ["max_skipped_steps=0 must be > 0"]),
    ],
)
def test_bad_flags(extra: list[str], fragments: list[str], sample_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    _fails(capsys, train_args(sample_dir, out, "--max-steps", "3", *extra), *fragments)
    assert not (out / "checkpoints").exists()


def test_missing_data(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    _fails(
        capsys,
        ["train", *FAST_MODEL, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")],
        "wiki.train.raw (the train split) is not in --data-dir",
    )


def test_out_folder_holding_another_run_needs_resume(sample_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(sample_dir, out, "--max-steps", "3")) == 0
    capsys.readouterr()
    before = (out / "metrics.jsonl").read_text()
    _fails(capsys, train_args(sample_dir, out, "--max-steps", "3"), "already holds another run", f"--resume {out}")
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_errors(sample_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(sample_dir, out, "--max-steps", "3")) == 0
    capsys.readouterr()
    _fails(
        capsys,
        ["train", "--resume", str(out), "--d-model", "64"],
        "conflicting model config: d_model=64, but the checkpoint has d_model=32",
    )
    _fails(capsys, ["train", "--resume", str(out), "--batch-size", "8"], "batch_size=8, but the run used batch_size=4")
    _fails(
        capsys,
        ["train", "--resume", str(out), "--batch-size", "8"],
        "resume on any number of ranks with the same value",
    )
    _fails(
        capsys, ["train", "--resume", str(out), "--preset", "tiny"], "--preset tiny, but the run was trained as micro"
    )
    _fails(capsys, ["train", "--resume", str(tmp_path / "nothing")], "no run there")
    _fails(capsys, ["train", "--resume", str(out), "--out", str(tmp_path / "other")], "name different folders")


def test_config_file_errors(tmp_path: Path, capsys) -> None:
    bad_key = tmp_path / "a.toml"
    bad_key.write_text('preset = "micro"\nbatchsize = 4\n')
    _fails(capsys, ["train", "--config", str(bad_key)], "unknown key 'batchsize'")
    broken = tmp_path / "b.toml"
    broken.write_text("preset = \n")
    _fails(capsys, ["train", "--config", str(broken)], "is not valid TOML")
    _fails(capsys, ["train", "--config", str(tmp_path / "none.toml")], "no such file")
