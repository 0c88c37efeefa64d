"""`lmtrain bench train`, the measured peak and MFU, and bench/gpu.sh --smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import LMTRAIN, REPO, read_jsonl
from lmtrain import hardware
from lmtrain.bench import train as bench
from lmtrain.hardware import Peak, datasheet_flops, peak_flops
from lmtrain.presets import get_preset
from lmtrain.train.step import TrainStep

MICRO = get_preset("micro")
CPU = torch.device("cpu")


def test_bench_train_cli_reports_throughput_mfu_and_speedup(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    cmd = [LMTRAIN, "bench", "train", "--preset", "micro", "--device", "cpu", "--batch-size", "2", "--steps", "3"]
    cmd += ["--warmup-steps", "1", "--against", "hf", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r == json.loads(proc.stdout)
    assert r["tokens_per_step"] == 2 * 64 and r["timed_steps"] == 3 and r["hf_timed_steps"] == 3
    assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / (r["step_ms"] / 1e3), rel=1e-3)
    assert r["speedup"] == pytest.approx(r["tokens_per_s"] / r["hf_tokens_per_s"], rel=1e-2)
    peak = r["peak_tflops_measured"] * 1e12
    assert r["mfu"] == pytest.approx(r["tokens_per_s"] * r["flops_per_token"] / peak, rel=1e-2)
    assert r["flops_per_token"] > 0 and r["peak_memory_bytes"] > 0 and r["eval_tokens_per_s"] > 0
    assert r["provenance"]["torch"] == torch.__version__ and r["dtype"] == "fp32"
    assert (tmp_path / "c" / "peak_flops.json").is_file()  # measured once, cached per device


def test_bench_train_times_the_trainers_own_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = TrainStep.__call__

    def counted(self, step: int):
        calls.append(step)
        return original(self, step)

    monkeypatch.setattr(TrainStep, "__call__", counted)
    b = bench.TrainBench(MICRO, CPU, "fp32", batch_size=2, seq_len=16, grad_accum=2, steps=4, warmup=2)
    peak = Peak("test", "fp32", 1e11, 512, None)
    result = bench.bench_train(b, peak)
    assert calls == [0, 1, 2, 3, 4, 5]  # warm-up then timed steps, numbered as the trainer numbers them
    assert result["tokens_per_step"] == 2 * 2 * 16 and result["timed_steps"] == 4


def test_bad_bench_settings_are_one_line_errors() -> None:
    proc = subprocess.run(
        [LMTRAIN, "bench", "train", "--preset", "micro", "--device", "cpu", "--seq-len", "65"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "max_seq_len=64" in proc.stderr and "Traceback" not in proc.stderr


def test_max_batch_bisects_between_the_last_fit_and_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []

    def fits(b, batch, model):
        tried.append(batch)
        return batch * 100 if batch <= 5 else None

    monkeypatch.setattr(bench, "_fits", fits)
    b = bench.TrainBench(MICRO, CPU, "fp32", batch_size=1, seq_len=16)
    result = bench.max_batch(b, limit=64)
    assert result["max_batch"] == 5 and result["max_batch_peak_memory_bytes"] == 500
    assert tried == [1, 2, 4, 8, 6, 5]


def test_max_batch_really_steps_at_each_size() -> None:
    b = bench.TrainBench(MICRO, CPU, "fp32", batch_size=1, seq_len=16)
    result = bench.max_batch(b, limit=3)
    assert result["max_batch"] == 3 and result["max_batch_peak_memory_bytes"] > 0


def test_peak_is_measured_once_and_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = peak_flops(CPU, "fp32", tmp_path)
    assert first.measured_flops > 1e8 and first.dtype == "fp32"

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(hardware, "measure_peak", no_measuring)
    assert peak_flops(CPU, "fp32", tmp_path) == first


def test_datasheet_figures_match_device_names() -> None:
    assert datasheet_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert datasheet_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert datasheet_flops("NVIDIA H200", "bf16") == 989e12
    assert datasheet_flops("AMD EPYC (2 threads)", "fp32") is None


def test_training_logs_carry_mfu_by_the_same_definition(trained_run: Path) -> None:
    records = read_jsonl(trained_run / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    assert start["peak_flops"] > 0 and start["flops_per_token"] > 0
    steps = [r for r in records if r["event"] == "step"]
    for r in steps:
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * start["flops_per_token"] / start["peak_flops"], rel=1e-2)
    end = next(r for r in records if r["event"] == "end")
    assert end["mfu"] == pytest.approx(end["tokens_per_s"] * start["flops_per_token"] / start["peak_flops"], rel=1e-2)


def test_gpu_script_smoke_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = os.environ | {"LMTRAIN": LMTRAIN, "LMTRAIN_CACHE_DIR": str(tmp_path / "cache"), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--smoke", "--out", str(out), "--dist"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = json.loads(out.read_text())
    assert merged["smoke"] is True
    assert set(merged["results"]) == {
        "train-micro-eager", "profile-micro", "max-batch-micro", "generate-micro", "dist-train-ddp",
        "scaling-micro-fsdp",
    }  # fmt: skip
    run = merged["results"]["dist-train-ddp"]  # torchrun with 2 CPU processes: a whole run, then the step's scaling
    assert run["exit_code"] == 0 and run["steps"] == 4 and run["checkpoints"] == ["step_0000004"]
    assert run["distributed"]["world_size"] == 2 and run["distributed"]["parallel"] == "ddp"
    scaling = merged["results"]["scaling-micro-fsdp"]
    assert len(scaling["per_rank"]) == 2 and scaling["scaling_efficiency"] > 0 and scaling["parallel"] == "fsdp"
    train = merged["results"]["train-micro-eager"]
    assert train["timed_steps"] == 2 and train["speedup"] > 0 and train["preset"] == "micro"
    assert merged["results"]["profile-micro"]["profile"][0]["self_ms_per_step"] > 0
    assert merged["results"]["max-batch-micro"]["max_batch"] == 4
    assert merged["results"]["generate-micro"]["identical_tokens"] is True
