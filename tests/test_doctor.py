"""The doctor: one test per rule on hand-made facts, document statistics, `lmtrain doctor` and `--doctor`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_MODEL, build_trainer, step_losses, train_args
from lmtrain.cli import main
from lmtrain.config import build_run_config
from lmtrain.doctor import rules
from lmtrain.doctor.examine import document_stats
from lmtrain.doctor.rules import GIB, DocumentStats, Facts, Trial

TINY = 16_090_880


def _facts(total_steps: int = 2000, **keys) -> Facts:
    fact_fields = {f.name for f in dataclasses.fields(Facts)}
    facts = {k: keys.pop(k) for k in list(keys) if k in fact_fields}
    cfg = build_run_config({"preset": "tiny", "warmup": 100, **keys})
    base = dict(
        cfg=cfg,
        total_steps=total_steps,
        start_step=0,
        train_tokens=120_000_000,
        eval_windows=400,
        documents=DocumentStats(1000, 3000.0, 0.9),
        device="cpu",
        dtype="fp32",
        device_memory=64 * GIB,
        cpu_has_bf16=True,
        trial=Trial(0.5, 10.9, None),
    )
    return Facts(**(base | facts))


def test_parameters() -> None:
    finding = rules.parameters(_facts())
    assert finding.level == "OK" and "16,014,336 parameters, 3,148,544 outside the embeddings" in finding.message


def test_steps() -> None:
    finding = rules.steps(_facts(batch_size=32, micro_batch_size=8, start_step=500, total_steps=2000))
    assert finding.level == "OK" and "2,000 optimizer steps (1,500 left after step 500)" in finding.message
    assert "32 x 256 = 8,192 tokens, in 4 micro-batches of 8" in finding.message


def test_tokens_per_parameter() -> None:
    budget = 20 * TINY // (32 * 256)  # steps for 20 tokens per parameter
    ok = rules.tokens_per_parameter(_facts(total_steps=budget, train_tokens=400_000_000))
    assert ok.level == "OK" and "against the ~20 of a compute-optimal run" in ok.message
    demo = rules.tokens_per_parameter(_facts(total_steps=120, batch_size=16, seq_len=128, train_tokens=247_787))
    assert demo.level == "WARN" and "(0.0153 per parameter" in demo.message and "smaller --preset" in demo.message
    repeated = rules.tokens_per_parameter(_facts(total_steps=budget, train_tokens=50_000_000))
    assert repeated.level == "WARN" and "repeating data more than ~4 times" in repeated.message


def test_warmup() -> None:
    long = rules.warmup(_facts(total_steps=1200, warmup=1000, lr=3e-4))
    assert long.level == "WARN" and "warmup 1000 of 1200 steps (83%)" in long.message
    assert "the LR at step 100 is 3.0e-05, 0.1 of the peak" in long.message and "use --warmup 60" in long.message
    assert "step 500: 0.00015" in long.message
    never = rules.warmup(_facts(total_steps=1000, warmup=1000))
    assert never.level == "ERROR" and "never reaches its peak" in never.message
    allowed = rules.warmup(_facts(total_steps=1000, warmup=1000, allow_long_warmup=True))
    assert allowed.level == "WARN"
    fine = rules.warmup(_facts(total_steps=10_000, warmup=500, lr=6e-4))
    assert fine.level == "OK" and "(5%)" in fine.message and "step 100: 0.000121" in fine.message


def test_learning_rate() -> None:
    assert rules.learning_rate(_facts(lr=1e4)).level == "WARN"
    assert rules.learning_rate(_facts(lr=1e-6)).level == "WARN"
    assert rules.learning_rate(_facts(lr=6e-4)).level == "OK"


def test_context() -> None:
    ok = rules.context(_facts(documents=DocumentStats(62, 2979.0, 0.968)))
    assert ok.level == "OK" and "97% of the 62 training documents are longer than the 256-token window" in ok.message
    assert "packed back to back and run across windows, never cut" in ok.message
    short = rules.context(_facts(seq_len=128))
    assert short.level == "WARN" and "positions 128-255 are never trained" in short.message
    assert "--seq-len 256 or --max-seq-len 128" in short.message


def test_architecture() -> None:
    assert rules.architecture(_facts()).level == "OK"
    halved = rules.architecture(_facts(d_ff=512))
    assert halved.level == "WARN" and "d_ff=512 is 2 x d_model=256" in halved.message
    swiglu = rules.architecture(_facts(mlp="swiglu"))
    assert swiglu.level == "OK" and "SwiGLU's parameter-matched 2/3 of 4 x d_model = 680" in swiglu.message
    wide = rules.architecture(_facts(mlp="swiglu", d_ff=1024))  # the ReLU² width with three matrices: 50% more
    assert (
        wide.level == "WARN" and "every preset uses SwiGLU's parameter-matched 2/3 of 4 x d_model (680)" in wide.message
    )
    assert rules.architecture(_facts(arch="gpt2")).level == "OK"


def test_precision() -> None:
    slow = rules.precision(_facts(dtype="bf16", cpu_has_bf16=False))
    assert slow.level == "WARN" and "use --dtype fp32" in slow.message
    assert rules.precision(_facts(dtype="bf16", cpu_has_bf16=True)).level == "OK"
    assert rules.precision(_facts(dtype="bf16", device="cuda:0", cpu_has_bf16=False)).level == "OK"


def test_evaluation() -> None:
    assert rules.evaluation(_facts(eval_windows=400)).level == "OK"
    few = rules.evaluation(_facts(eval_windows=8))
    assert few.level == "WARN" and "8 validation windows (2,048 tokens)" in few.message


def test_memory() -> None:
    facts = _facts(batch_size=16)
    estimate = rules.memory_estimate(facts)
    assert 0.74 * GIB < estimate < 0.86 * GIB  # a step's tensors measured 0.816 GiB at peak (`bench/memory.py --case`)
    assert rules.memory(facts).level == "OK"
    assert rules.memory(_facts(batch_size=16, device_memory=estimate // 2)).level == "ERROR"
    assert rules.memory(_facts(batch_size=16, device_memory=int(estimate / 0.95))).level == "WARN"
    measured = rules.memory(_facts(device="cuda:0", trial=Trial(0.1, 10.8, 3 * GIB), device_memory=2 * GIB))
    assert measured.level == "ERROR" and "3.00 GiB measured at peak" in measured.message
    oom = rules.memory(_facts(trial=Trial(float("nan"), float("nan"), None, out_of_memory=True)))
    assert oom.level == "ERROR" and "ran out of memory" in oom.message
    assert rules.memory(_facts(device_memory=None)).level == "OK"


def test_time_estimate() -> None:
    finding = rules.time_estimate(_facts(total_steps=7200, trial=Trial(0.5, 10.8, None)))
    assert (
        finding.level == "OK" and "one step took 0.5 s on cpu (fp32): about 60 min for 7,200 steps" in finding.message
    )
    assert "about 4.0 h for 28,800 steps" in rules.time_estimate(_facts(total_steps=28_800)).message
    assert "no step was measured" in rules.time_estimate(_facts(trial=None)).message


def test_initial_loss() -> None:
    assert rules.initial_loss(_facts(trial=Trial(0.1, 10.9, None))).level == "OK"
    bad = rules.initial_loss(_facts(trial=Trial(0.1, 13.2, None)))
    assert bad.level == "WARN" and "expected near ln(V) = 10.825" in bad.message
    # An untied head starts at zero: the first loss is ln(V) exactly, so 0.1 off is already a bug.
    assert rules.initial_loss(_facts(tie=False, trial=Trial(0.1, 10.8249, None))).level == "OK"
    off = rules.initial_loss(_facts(tie=False, trial=Trial(0.1, 10.9, None)))
    assert off.level == "WARN" and "the untied head starts at zero, so it must be exactly ln(V)" in off.message
    assert rules.initial_loss(_facts(arch="gpt2", trial=Trial(0.1, 10.9, None))).level == "OK"


def test_every_rule_is_in_the_report_once() -> None:
    codes = [f.code for f in rules.diagnose(_facts())]
    assert len(codes) == len(set(codes)) == len(rules.RULES)


def test_document_stats_in_a_packed_stream() -> None:
    eot = 50256
    tokens = np.array([1] * 10 + [eot] + [2] * 300 + [eot] + [3] * 50, dtype=np.uint16)
    stats = document_stats(tokens, seq_len=64)
    assert stats.documents == 3 and stats.median_tokens == 50 and stats.longer_than_context == pytest.approx(1 / 3)


ALL_CODES = {
    "parameters",
    "steps",
    "tokens_per_parameter",
    "warmup",
    "lr",
    "context",
    "d_ff",
    "dtype",
    "evaluation",
    "memory",
    "time",
    "initial_loss",
}


def test_doctor_command_reports_findings_as_json(sample_dir: Path, capsys) -> None:
    args = ["doctor", *FAST_MODEL, "--data-dir", str(sample_dir), "--batch-size", "4", "--max-steps", "50"]
    code = main([*args, "--warmup", "5", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {f["code"] for f in report["findings"]} == ALL_CODES
    assert all(set(f) == {"level", "code", "message"} and f["level"] in ("OK", "WARN") for f in report["findings"])
    assert report["measured"]["initial_loss"] == pytest.approx(10.83, abs=0.3)
    assert report["measured"]["step_seconds"] > 0
    assert report["plan"]["total_steps"] == 50 and report["documents"]["documents"] == 50


def test_doctor_exit_code_is_1_on_an_error(sample_dir: Path, capsys) -> None:
    args = ["doctor", *FAST_MODEL, "--data-dir", str(sample_dir), "--batch-size", "4", "--max-steps", "50"]
    assert main([*args, "--warmup", "5"]) == 0
    assert "ERROR" not in capsys.readouterr().out
    code = main([*args, "--warmup", "50"])
    out = capsys.readouterr().out
    assert code == 1 and any(line.startswith("ERROR  warmup") for line in out.splitlines())


def test_a_step_that_cannot_fit_is_an_error_found_without_trying_it(sample_dir: Path, tmp_path: Path, capsys) -> None:
    huge = ("--max-seq-len", "512", "--batch-size", "480", "--max-steps", "1", "--warmup", "0", "--d-model", "2048")
    assert main(["doctor", *FAST_MODEL, "--data-dir", str(sample_dir), *huge]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("ERROR  memory") and "it will run out of memory" in line for line in out.splitlines())
    assert "no step was measured" in out
    run = tmp_path / "run"
    code = main([*train_args(sample_dir, run, *huge, "--doctor", "strict")])
    err = capsys.readouterr().err
    assert code == 2 and "--doctor strict does not start the run: [memory]" in err and not run.exists()


def test_the_doctor_does_not_change_the_run(sample_dir: Path, tmp_path: Path, capsys) -> None:
    common = ("--max-steps", "4", "--eval-every", "0", "--dropout", "0.1")
    assert main(train_args(sample_dir, tmp_path / "on", *common)) == 0
    on = capsys.readouterr().out
    assert main(train_args(sample_dir, tmp_path / "off", *common, "--doctor", "off")) == 0
    off = capsys.readouterr().out
    assert "doctor   OK    parameters" in on and "doctor " not in off
    assert step_losses(tmp_path / "on") == step_losses(tmp_path / "off")


def test_lr_names_the_muon_matrices_peak() -> None:
    adamw = rules.learning_rate(_facts(lr=1e-3, optimizer="adamw"))
    assert adamw.level == "OK" and "Muon" not in adamw.message
    muon = rules.learning_rate(_facts(lr=1e-3, optimizer="muon"))
    assert muon.message.endswith("; Muon matrices at 0.003")
    assert rules.learning_rate(_facts(lr=1e-3, optimizer="muon", muon_lr=5e-3)).message.endswith(
        "Muon matrices at 0.005"
    )


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_measured_step_running_out_of_memory_is_a_finding_on_every_device(
    device: str, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doctor's trial step and the trainer recognise an allocation failure the same way (`is_out_of_memory`): the
    CPU allocator's own RuntimeError (raised for real here) as well as CUDA's type."""
    import torch

    from lmtrain.doctor import examine

    def allocate(*_args, **_keys):
        if device == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.empty(10**13)  # 40 TB: the CPU allocator refuses it

    trainer = build_trainer(sample_dir, tmp_path / "run", tmp_path / "cache", max_steps=2)
    monkeypatch.setattr(examine, "_timed_step", allocate)
    trial = examine.trial_step(trainer.cfg, trainer.data, torch.device("cpu"), "fp32")
    assert trial.out_of_memory and math.isnan(trial.step_seconds)
    monkeypatch.setattr(examine, "_timed_step", lambda *_, **__: (_ for _ in ()).throw(RuntimeError("my own bug")))
    with pytest.raises(RuntimeError, match="my own bug"):  # anything else is not taken for a lack of memory
        examine.trial_step(trainer.cfg, trainer.data, torch.device("cpu"), "fp32")


@pytest.mark.slow
def test_the_memory_estimate_is_near_the_measured_peak_of_a_step(tmp_path: Path) -> None:
    """`step_memory` against the peak of one step's tensor bytes on this CPU (`bench/memory.py --case`, a fresh
    process, torch's allocator counting under the profiler: the same however loaded the machine), with AdamW and with
    Muon and activation checkpointing, tied and untied."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "memory.py"
    for case in (
        {"model": "small", "batch": 4, "seq": 256, "optimizer": "adamw"},
        {"model": "small", "batch": 4, "seq": 256, "optimizer": "muon", "checkpointing": True},
        {"model": "tiny", "batch": 4, "seq": 256, "optimizer": "adamw", "untied": True},
    ):
        done = subprocess.run([sys.executable, str(script), "--case", json.dumps(case)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        row = json.loads(done.stdout.strip().splitlines()[-1])
        assert 0.9 < row["estimate_over_measured"] < 1.05, row  # measured 0.93-0.94 (memory-cpu-2core.json: 0.95-1.00)


def test_a_run_from_a_trained_model_expects_its_own_loss_not_ln_v() -> None:
    ln_v = math.log(50257)

    def finding(loss: float, **keys):
        facts = _facts(trial=Trial(0.5, loss, None), **keys)
        return rules.initial_loss(dataclasses.replace(facts, cfg=dataclasses.replace(facts.cfg, origin={"path": "m"})))

    assert finding(3.2).level == "OK" and "with the weights of m" in finding(3.2).message
    assert finding(ln_v - 0.3).level == "OK"  # far from its own domain a trained model may start near ln(V)
    far = finding(ln_v - 0.3, optimizer="adamw", lr=1e-4)  # ... where --init-from's defaults learn slowly
    assert far.level == "WARN" and "within 2 nats of ln(V)" in far.message and "--optimizer muon" in far.message
    assert finding(ln_v - 2.5, optimizer="adamw", lr=1e-4).level == "OK"
    assert finding(3.2, optimizer="adamw", lr=1e-4).level == "OK"
    untrained = finding(ln_v + 0.001)
    assert untrained.level == "WARN" and "as an untrained model's" in untrained.message
    assert finding(ln_v + 3).level == "WARN" and "far above it" in finding(ln_v + 3).message
    assert rules.initial_loss(_facts(trial=Trial(0.5, 3.2, None))).level == "WARN"  # from scratch: ln(V) expected
