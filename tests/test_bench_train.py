"""`lmtrain bench train`, the measured peak and MFU, and bench/gpu.sh --smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import LMTRAIN, REPO, read_jsonl, seed_peak, train_args
from lmtrain import hardware
from lmtrain.bench import batch
from lmtrain.bench.timing import TrainBench, bench_train
from lmtrain.errors import ConfigError
from lmtrain.hardware import Peak, datasheet_flops, peak_flops
from lmtrain.model.sizing import flops_per_token
from lmtrain.presets import get_preset
from lmtrain.train.step import TrainStep

MICRO = get_preset("micro")
CPU = torch.device("cpu")


@pytest.mark.slow
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
    assert r["flops_per_token"] == flops_per_token(MICRO, 64) and r["eval_tokens_per_s"] > 0
    # the step's peak holds at least the fp32 weights, gradients and AdamW's two moments: 16 bytes a parameter
    assert r["peak_memory_kind"] == "process_peak_rss" and r["peak_memory_bytes"] >= 16 * r["parameters"]
    assert r["provenance"]["torch"] == torch.__version__ and r["dtype"] == "fp32"
    assert (tmp_path / "c" / "peak_flops.json").is_file()  # measured once, cached per device


@pytest.mark.slow
def test_bench_train_times_the_trainers_own_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = TrainStep.__call__

    def counted(self, step: int):
        calls.append(step)
        return original(self, step)

    monkeypatch.setattr(TrainStep, "__call__", counted)
    b = TrainBench(
        model=MICRO, device=CPU, dtype="fp32", batch_size=4, micro_batch_size=2, seq_len=16, steps=4, warmup=2
    )
    peak = Peak(device_name="test", dtype="fp32", measured_flops=1e11, matmul_size=512)
    result = bench_train(b, peak)
    assert calls == [0, 1, 2, 3, 4, 5]  # warm-up then timed steps, numbered as the trainer numbers them
    assert result["tokens_per_step"] == 2 * 2 * 16 and result["timed_steps"] == 4


@pytest.mark.slow
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

    monkeypatch.setattr(batch, "_fits", fits)
    b = TrainBench(model=MICRO, device=CPU, dtype="fp32", batch_size=1, seq_len=16)
    result = batch.max_batch(b, limit=64)
    assert result["max_batch"] == 5 and result["max_batch_peak_memory_bytes"] == 500
    assert tried == [1, 2, 4, 8, 6, 5]


@pytest.mark.slow
def test_max_batch_really_steps_at_each_size() -> None:
    b = TrainBench(model=MICRO, device=CPU, dtype="fp32", batch_size=1, seq_len=16)
    result = batch.max_batch(b, limit=3)
    assert result["max_batch"] == 3 and result["max_batch_peak_memory_bytes"] >= 16 * MICRO.param_counts()["total"]


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


@pytest.mark.slow
def test_training_logs_carry_mfu_by_the_same_definition(trained_run: Path) -> None:
    records = read_jsonl(trained_run / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    assert start["peak_flops"] > 0 and start["flops_per_token"] > 0
    steps = [r for r in records if r["event"] == "step"]
    for r in steps:
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * start["flops_per_token"] / start["peak_flops"], rel=1e-2)
    end = next(r for r in records if r["event"] == "end")
    assert end["mfu"] == pytest.approx(end["tokens_per_s"] * start["flops_per_token"] / start["peak_flops"], rel=1e-2)


@pytest.mark.slow
@pytest.mark.xdist_group("ranks")  # it starts torchrun's ranks: on the worker of test_distributed.py
def test_gpu_script_smoke_runs_end_to_end_on_the_cpu(tmp_path: Path, measured_peak: str) -> None:
    out, cache = tmp_path / "gpu.json", seed_peak(tmp_path / "cache", measured_peak)
    env = os.environ | {"LMTRAIN": LMTRAIN, "LMTRAIN_CACHE_DIR": str(cache), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--smoke", "--out", str(out), "--dist", "--sweep"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    phases = [line for line in proc.stderr.splitlines() if line.startswith("== ")]  # which part failed, then how
    assert proc.returncode == 0, "\n".join(phases[-3:]) + "\n" + proc.stderr[-6000:]
    merged = json.loads(out.read_text())
    assert merged["smoke"] is True
    assert set(merged["results"]) == {
        "best-batch-micro-modern",
        "train-micro-modern-muon-eager",
        "train-micro-modern-adamw-eager",
        "lever-pad64-micro-modern-eager",
        "profile-micro",
        "generate-micro",
        "lr-sweep",
        "dist-train-ddp",
        "scaling-micro-fsdp",
    }
    results = merged["results"]
    run = results["dist-train-ddp"]  # torchrun with 2 CPU processes: a whole run, then the step's scaling
    assert run["exit_code"] == 0 and run["steps"] == 4 and run["checkpoints"] == ["step_0000004"]
    assert run["distributed"]["world_size"] == 2 and run["distributed"]["parallel"] == "ddp"
    scaling = results["scaling-micro-fsdp"]
    assert len(scaling["per_rank"]) == 2 and scaling["scaling_efficiency"] > 0 and scaling["parallel"] == "fsdp"
    assert (scaling["batch_size"], scaling["per_rank_batch"]) == (4, 2)  # the global batch, one micro-batch a rank
    best = results["best-batch-micro-modern"]
    assert best["max_batch"] == 4 and [c["micro_batch"] for c in best["candidates"]] == [1, 2, 4]
    assert best["best_batch"] in (1, 2, 4)
    for name in ("train-micro-modern-muon-eager", "train-micro-modern-adamw-eager", "lever-pad64-micro-modern-eager"):
        train = results[name]  # every timed run at the micro-batch the search chose
        assert (
            train["timed_steps"] == 2 and train["micro_batch_size"] == best["best_batch"] and train["preset"] == "micro"
        )
        assert train["eval_tokens_per_s"] > 0
    assert results["train-micro-modern-muon-eager"]["optimizer"] == "muon"
    assert results["train-micro-modern-adamw-eager"]["speedup"] > 0
    assert results["profile-micro"]["profile"][0]["self_ms_per_step"] > 0
    assert results["generate-micro"]["identical_tokens"] is True
    sweep = results["lr-sweep"]
    assert sweep["preset_lr"]["modern"]["micro"] in [g["lr"] for g in sweep["groups"][0]["grid"].values()]
    assert len(sweep["groups"][0]["runs"]) == 3  # two LRs with seed 1, the finalist again with seed 2


def _bench_micro(capsys: pytest.CaptureFixture[str], cache: Path) -> tuple[dict, str]:
    from lmtrain.cli import main

    argv = ["bench", "train", "--preset", "micro", "--device", "cpu", "--batch-size", "2", "--seq-len", "32"]
    assert main([*argv, "--steps", "2", "--warmup-steps", "1", "--cache-dir", str(cache)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _cache_peak(cache: Path, flops: float) -> Path:
    """A peak cache holding `flops` for this CPU in fp32 (as a busy machine once measured it)."""
    cache.mkdir(parents=True, exist_ok=True)
    name = hardware.device_name(CPU)
    entry = {"device_name": name, "dtype": "fp32", "measured_flops": flops, "matmul_size": 512}
    path = cache / "peak_flops.json"
    path.write_text(json.dumps({f"{name}|fp32|torch {torch.__version__}": entry | {"datasheet_flops": None}}))
    return path


def _cached_flops(path: Path) -> float:
    return next(iter(json.loads(path.read_text()).values()))["measured_flops"]


@pytest.mark.slow
def test_a_peak_cached_under_load_is_measured_again_and_raised(tmp_path: Path, capsys) -> None:
    path = _cache_peak(tmp_path / "c", 1e6)  # far below what any step reaches: the MFU would be thousands of %
    result, err = _bench_micro(capsys, tmp_path / "c")
    assert result["peak_remeasured"] is True and result["peak_stale"] is False and "peak_note" not in result
    assert 0 < result["mfu"] <= 1 and _cached_flops(path) == pytest.approx(
        result["peak_tflops_measured"] * 1e12,
        abs=0.5e-4 * 1e12,  # the result's figure is rounded to 4 places of TFLOP/s
    )
    assert _cached_flops(path) > 1e9
    assert "bench peak --refresh" not in err


@pytest.mark.slow
def test_an_mfu_above_the_peak_says_the_peak_is_stale_and_how_to_refresh_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware, "measure_peak", lambda *a, **k: (1e6, 512))  # a machine busy at every measurement
    result, err = _bench_micro(capsys, tmp_path / "c")
    assert result["mfu"] > 1 and result["peak_stale"] is True and result["peak_remeasured"] is True
    assert "lmtrain bench peak --refresh" in result["peak_note"] and "note: MFU" in err


@pytest.mark.slow
def test_training_measures_a_low_peak_again_and_warns_when_it_stays_low(
    sample_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmtrain.cli import main

    args = ["--max-steps", "4", "--eval-every", "0", "--save-every", "0", "--cache-dir", str(tmp_path / "c")]
    measured = iter([(1e15, 4096)])  # the cache says 1e6; measured again, the device shows its real peak
    monkeypatch.setattr(hardware, "measure_peak", lambda *a, **k: next(measured))
    path = _cache_peak(tmp_path / "c", 1e6)
    assert main(train_args(sample_dir, tmp_path / "quiet", *args)) == 0
    records = read_jsonl(tmp_path / "quiet" / "metrics.jsonl")
    assert [r["mfu"] < 1 for r in records if r["event"] == "step"] == [True] * 4  # recomputed from the first line on
    assert not [r for r in records if r["event"] == "warning"] and _cached_flops(path) == 1e15
    capsys.readouterr()
    monkeypatch.setattr(hardware, "measure_peak", lambda *a, **k: (1e6, 512))
    _cache_peak(tmp_path / "c", 1e6)
    assert main(train_args(sample_dir, tmp_path / "busy", *args)) == 0
    warnings = [r for r in read_jsonl(tmp_path / "busy" / "metrics.jsonl") if r["event"] == "warning"]
    assert [w["code"] for w in warnings] == ["mfu.stale_peak"] and "bench peak --refresh" in warnings[0]["message"]
    lines = [line for line in capsys.readouterr().out.splitlines() if " tok/s" in line]  # the step lines
    assert lines and all("(above the measured peak: lmtrain bench peak --refresh)" in line for line in lines)


def test_bench_peak_shows_the_cache_and_refresh_replaces_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmtrain.cli import main

    monkeypatch.setattr(hardware, "measure_peak", lambda *a, **k: (2e11, 2048))
    path = _cache_peak(tmp_path, 1e20)
    argv = ["bench", "peak", "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["measured_flops"] == 1e20  # shown, not measured
    assert peak_flops(CPU, "fp32", tmp_path, remeasure=True).measured_flops == 1e20  # a re-measure only raises it
    assert main([*argv, "--refresh"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["measured_flops"] == 2e11 == _cached_flops(path) and shown["refreshed"] is True
    assert shown["measured_at"].endswith("Z")


def test_an_mfu_above_100_percent_is_never_printed_without_the_refresh_command() -> None:
    from lmtrain.hardware import mfu_text

    assert mfu_text(0.5) == "50.0%" and mfu_text(1.0) == "100.0%"
    assert mfu_text(1.036) == "103.6% (above the measured peak: lmtrain bench peak --refresh)"


def test_the_peak_is_measured_up_to_the_plateau(monkeypatch: pytest.MonkeyPatch) -> None:
    curve = {512: 50e9, 1024: 100e9, 2048: 103e9, 4096: 300e9}  # 1024 -> 2048 gains 3%: the plateau
    timed: list[int] = []

    def fake(device, dtype, n, repeats):
        timed.append(n)
        return curve[n] + len(timed), 0.001

    monkeypatch.setattr(hardware, "_timed_matmul", fake)
    flops, size = hardware.measure_peak(CPU, "fp32")
    assert timed == [512, 1024, 2048] and size == 2048 and flops == 103e9 + 3
    curve[2048] = 90e9  # a size past the plateau that ran slower: the best size is kept
    timed.clear()
    assert hardware.measure_peak(CPU, "fp32") == (100e9 + 2, 1024)


def test_best_batch_times_each_power_of_two_up_to_the_largest_and_picks_the_fastest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lmtrain.bench import batch

    assert batch.batch_candidates(1) == [1] and batch.batch_candidates(12) == [1, 2, 4, 8, 12]
    speeds = {1: 100.0, 2: 180.0, 4: 260.0, 6: 240.0}  # the largest that fits is not the fastest
    timed: list[tuple[int, int | None]] = []

    def fake_train(b, peak):
        timed.append((b.batch_size, b.micro_batch_size))
        keys = ("step_ms", "mfu", "peak_memory_bytes", "eval_tokens_per_s")
        return {"tokens_per_s": speeds[b.batch_size]} | dict.fromkeys(keys, 1)

    monkeypatch.setattr(batch, "max_batch", lambda b, limit: {"max_batch": 6, "max_batch_limit": limit})
    monkeypatch.setattr(batch, "bench_train", fake_train)
    b = TrainBench(model=MICRO, device=CPU, dtype="fp32", batch_size=1, seq_len=16)
    result = batch.best_batch(b, peak=None, limit=8)
    assert timed == [(1, None), (2, None), (4, None), (6, None)]
    assert result["best_batch"] == 4 and result["best_tokens_per_s"] == 260.0 and result["max_batch"] == 6
    monkeypatch.setattr(batch, "max_batch", lambda b, limit: {"max_batch": 0, "max_batch_limit": limit})
    with pytest.raises(ConfigError, match="not even one sequence"):
        batch.best_batch(b, peak=None, limit=8)
