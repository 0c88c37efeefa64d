"""Bad input to `lmtrain eval` and `generate`: one line, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LMTRAIN
from lmtrain.checkpoint import resolve_checkpoint

pytestmark = pytest.mark.slow  # every test here trains a model or runs the CLI in a subprocess


def _fails(args: list[str], *fragments: str) -> None:
    proc = subprocess.run([LMTRAIN, *args], capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def ckpt_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(trained_run, "best"), copy)
    return copy


def test_missing_checkpoint(tmp_path: Path) -> None:
    _fails(["eval", str(tmp_path / "nope")], "does not exist")
    (tmp_path / "empty").mkdir()
    _fails(["eval", str(tmp_path / "empty")], "neither a checkpoint folder")
    _fails(["generate", str(tmp_path / "nope"), "--prompt", "x"], "does not exist")


def test_truncated_safetensors(ckpt_copy: Path) -> None:
    weights = ckpt_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _fails(["eval", str(ckpt_copy)], "model.safetensors is damaged or truncated")


def test_missing_config_json(ckpt_copy: Path) -> None:
    (ckpt_copy / "config.json").unlink()
    _fails(["eval", str(ckpt_copy)], "has no config.json")


def test_wrong_shapes(ckpt_copy: Path) -> None:
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["model"]["d_ff"] = 128
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    _fails(["eval", str(ckpt_copy)], "does not match its config.json", "mlp.c_fc.", "has shape (256", "expected (128")


def test_bad_model_config_in_checkpoint(ckpt_copy: Path) -> None:
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["model"]["n_head"] = 3
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    _fails(["eval", str(ckpt_copy)], "must be a multiple of n_head=3")


def test_unknown_split_context_and_stride(trained_run: Path, sample_dir: Path) -> None:
    data = ["--data-dir", str(sample_dir)]
    _fails(["eval", str(trained_run), *data, "--split", "dev"], "unknown split 'dev'")
    _fails(
        ["eval", str(trained_run), *data, "--context", "65"],
        "--context 65 must be between 1 and the model's max_seq_len=64",
    )
    _fails(["eval", str(trained_run), *data, "--stride", "100"], "--stride 100 must be between 1 and the context (64)")


def test_prompt_longer_than_the_context(trained_run: Path) -> None:
    _fails(
        ["generate", str(trained_run), "--prompt", " word" * 80],
        "the prompt is 80 tokens; the model's context is 64",
    )


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--temperature", "-1"], "--temperature -1.0 must be >= 0"),
        (["--top-p", "1.5"], "--top-p 1.5 must be in (0, 1]"),
        (["--top-k", "0"], "--top-k 0 must be at least 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0 must be at least 1"),
    ],
)
def test_bad_sampling_flags(trained_run: Path, flags: list[str], fragment: str) -> None:
    _fails(["generate", str(trained_run), "--prompt", "x", *flags], fragment)
