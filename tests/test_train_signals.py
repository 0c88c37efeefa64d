"""Interrupting training: SIGINT/SIGTERM checkpoint and exit cleanly; kill -9 mid-write loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_jsonl, train_args
from lmtrain import checkpoint as ckpt

pytestmark = pytest.mark.slow  # every test here trains a model or runs the CLI in a subprocess


def _start(sample_dir: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = train_args(sample_dir, out, "--max-steps", "100000", "--eval-every", "0", *extra)
    return subprocess.Popen(
        [sys.executable, "-m", "lmtrain", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.005)


def _records(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_exits_cleanly(sig, code, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(sample_dir, out, "--save-every", "0")
    _wait_for(lambda: _records(out) >= 3, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and f"continue with: lmtrain train --resume {out}" in stdout
    last = max(r["step"] for r in read_jsonl(out / "metrics.jsonl"))
    found = ckpt.resolve_checkpoint(out)
    assert found.name == ckpt.checkpoint_name(last)
    assert ckpt.load_trainer_state(found)["step"] == last


def test_kill_9_during_a_checkpoint_write_leaves_the_previous_one_loadable(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(sample_dir, out, "--save-every", "1", "--keep-last", "2")
    root = out / "checkpoints"
    _wait_for(lambda: root.is_dir() and len(list(root.glob("step_*"))) >= 2 and any(root.glob(".step_*.tmp-*")), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(root.glob(".step_*.tmp-*")), "the kill did not land inside a checkpoint write"
    latest = ckpt.resolve_checkpoint(out)
    model, config = ckpt.load_model(latest)
    state = ckpt.load_trainer_state(latest)
    assert state["step"] == config["checkpoint"]["step"] == int(latest.name.split("_")[1])
    for path in root.glob("step_*"):  # every folder under a checkpoint's name is complete
        ckpt.load_model(path)
        ckpt.load_trainer_state(path)
    resumed = subprocess.run(
        [sys.executable, "-m", "lmtrain", "train", "--resume", str(out), "--max-steps", str(state["step"] + 2)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ckpt.resolve_checkpoint(out).name == ckpt.checkpoint_name(state["step"] + 2)
    assert not list(root.glob(".step_*.tmp-*"))  # the dead process's temporary folder is cleaned up
