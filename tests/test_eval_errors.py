"""Bad input to `lmtrain eval` and `generate`: one line, exit code 2, no traceback (in process, through `main`, and
once through the installed console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LMTRAIN
from lmtrain.checkpoint import resolve_checkpoint
from lmtrain.cli import main


def _one_line_exit_2(code: int, err: str, fragments: tuple[str, ...]) -> None:
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, err
    assert "Traceback" not in err and len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def fails(capsys: pytest.CaptureFixture[str]):
    """`fails(args, *fragments)`: `lmtrain ARGS` exits 2 with one error line holding every fragment."""

    def check(args: list[str], *fragments: str) -> None:
        code = main(args)
        _one_line_exit_2(code, capsys.readouterr().err, fragments)

    return check


@pytest.mark.slow
def test_the_console_script_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    for args, fragment in (
        (["eval", str(tmp_path / "nope")], "does not exist"),
        (["generate", str(tmp_path / "nope"), "--prompt", "x"], "does not exist"),
    ):
        proc = subprocess.run([LMTRAIN, *args], capture_output=True, text=True, timeout=300)
        _one_line_exit_2(proc.returncode, proc.stderr, (fragment,))


@pytest.fixture
def ckpt_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(trained_run, "best"), copy)
    return copy


def test_missing_checkpoint(tmp_path: Path, fails) -> None:
    fails(["eval", str(tmp_path / "nope")], "does not exist")
    (tmp_path / "empty").mkdir()
    fails(["eval", str(tmp_path / "empty")], "neither a checkpoint folder")
    fails(["generate", str(tmp_path / "nope"), "--prompt", "x"], "does not exist")


@pytest.mark.slow  # the trained model
def test_truncated_safetensors(ckpt_copy: Path, fails) -> None:
    weights = ckpt_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fails(["eval", str(ckpt_copy)], "model.safetensors is damaged or truncated")


@pytest.mark.slow  # the trained model
def test_missing_config_json(ckpt_copy: Path, fails) -> None:
    (ckpt_copy / "config.json").unlink()
    fails(["eval", str(ckpt_copy)], "has no config.json")


@pytest.mark.slow  # the trained model
def test_wrong_shapes(ckpt_copy: Path, fails) -> None:
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["model"]["d_ff"] = 128
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    fails(["eval", str(ckpt_copy)], "does not match its config.json", "mlp.c_fc.", "has shape (256", "expected (128")


@pytest.mark.slow  # the trained model
def test_bad_model_config_in_checkpoint(ckpt_copy: Path, fails) -> None:
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["model"]["n_head"] = 3
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    fails(["eval", str(ckpt_copy)], "must be a multiple of n_head=3")


@pytest.mark.slow  # the trained model
def test_unknown_split_context_and_stride(trained_run: Path, sample_dir: Path, fails) -> None:
    data = ["--data-dir", str(sample_dir)]
    fails(["eval", str(trained_run), *data, "--split", "dev"], "unknown split 'dev'")
    fails(
        ["eval", str(trained_run), *data, "--context", "65"],
        "--context 65 must be between 1 and the model's max_seq_len=64",
    )
    fails(["eval", str(trained_run), *data, "--stride", "100"], "--stride 100 must be between 1 and the context (64)")


@pytest.mark.slow  # the trained model
def test_prompt_longer_than_the_context(trained_run: Path, fails) -> None:
    fails(
        ["generate", str(trained_run), "--prompt", " word" * 80],
        "the prompt is 80 tokens; the model's context is 64",
    )


@pytest.mark.slow  # the trained model
@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--temperature", "-1"], "--temperature -1.0 must be >= 0"),
        (["--top-p", "1.5"], "--top-p 1.5 must be in (0, 1]"),
        (["--top-k", "0"], "--top-k 0 must be at least 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0 must be at least 1"),
    ],
)
def test_bad_sampling_flags(trained_run: Path, flags: list[str], fragment: str, fails) -> None:
    fails(["generate", str(trained_run), "--prompt", "x", *flags], fragment)
