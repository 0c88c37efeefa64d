"""The command line: `lmtrain prepare --json` on the sample, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LMTRAIN
from lmtrain.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LMTRAIN, *args], capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in lines if line.startswith("lmtrain: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # progress lines may come before it
    for fragment in fragments:
        assert fragment in errors[0], proc.stderr


def test_prepare_json_on_the_sample(tmp_path: Path) -> None:
    proc = _run(
        "prepare",
        "--dataset",
        "sample",
        "--no-download",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["train", "valid", "test"]
    assert data["train"]["original_tokens"] == 212_483 and data["test"]["documents"] == 6
    for split in data.values():
        assert {"documents", "tokens", "original_tokens", "bytes", "seconds"} <= set(split)


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "lmtrain", "presets", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)["base"]["params"] == 123_552_768


def test_missing_split_file_names_it_and_where_to_look(tmp_path: Path) -> None:
    folder = tmp_path / "wikitext-103"
    folder.mkdir()
    (folder / "wiki.test.tokens").write_text(" = A = \n text\n")  # the train split is not there
    proc = _run("prepare", "--dataset", "wikitext-103-v1", "--data-dir", str(folder), "--cache-dir", str(tmp_path))
    _assert_one_line_error(proc, "wiki.train.tokens", str(folder), "--data-dir")


def test_undecodable_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    proc = _run(
        "prepare",
        "--dataset",
        "text",
        "--data-dir",
        str(tmp_path),
        "--splits",
        "train",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    _assert_one_line_error(proc, "not valid UTF-8", "train.txt", "iconv")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["prepare", "--dataset", "wikitext-3"], "unknown dataset 'wikitext-3'"),
        (["prepare", "--splits", "train,dev"], "invalid split 'dev'"),
        (["prepare", "--workers", "0"], "--workers=0 must be at least 1"),
        (["prepare", "--bogus"], "unrecognized arguments: --bogus"),
        (["presets", "tiny", "--d-model", "wide"], "d_model='wide' is not an integer"),
        (["presets", "--n-layer", "3"], "model overrides need a preset"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and err.count("\n") == 0, err
