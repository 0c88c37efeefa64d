"""Training failures and the review's bugs: non-finite values, --on-nan skip, out of memory, exit codes,
the validation windows behind `best`, TOML paths, and tokens/s that counts training steps only."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
import torch

from conftest import Recorder, build_trainer, read_jsonl, train_args
from lmtrain import checkpoint as ckpt
from lmtrain.cli import main
from lmtrain.errors import EXIT_TRAINING_FAILED, TrainingFailed
from lmtrain.train.events import CheckpointSaved, Evaluated, RunEnded, RunFailed, StepEnded, Warned


def _observed(trainer) -> Recorder:
    recorder = Recorder()
    trainer.bus.add(recorder)
    return recorder


def _at_steps(trainer, steps: set[int], action) -> None:
    """Run `action(loss)` on the training forward pass of the given (1-based) steps; its result replaces the loss."""

    def hook(module, args, output):
        if module.training and trainer.step + 1 in steps:
            logits, loss = output
            return logits, action(loss)
        return None

    trainer.model.register_forward_hook(hook)


def _nan(loss: torch.Tensor) -> torch.Tensor:
    return loss * float("nan")


def test_the_reported_nan_run_exits_3_and_never_saves_a_non_finite_checkpoint(
    sample_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--preset",
            "micro",
            "--arch",
            "gpt2",  # the reported run (the modern block's QK-norm keeps this loss finite a step longer)
            "--dataset",
            "wikitext-103",
            "--data-dir",
            str(sample_dir),
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--max-steps",
            "30",
            "--warmup",
            "1",
            "--lr",
            "1e4",
            "--save-every",
            "2",
            "--eval-every",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--eval-windows",
            "4",
            "--sample-tokens",
            "0",
        ]
    )
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert code == EXIT_TRAINING_FAILED == 3 and len(errors) == 1 and "Traceback" not in captured.err
    assert "became nan at step 2" in errors[0] and "nothing was saved from that state" in errors[0]
    assert "--lr (now 10000)" in errors[0] and "--on-nan skip" in errors[0]
    assert "doctor   WARN  lr" in captured.out  # the doctor said so before the first step
    for path in (out / "checkpoints").glob("step_*"):
        assert math.isfinite(ckpt.load_checkpoint_config(path)["checkpoint"]["val_loss"])
    failed = [r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "non_finite" and failed[0]["step"] == 2


def test_a_nan_is_found_at_the_next_check_point_and_the_last_good_checkpoint_stays(
    sample_dir: Path, tmp_path: Path
) -> None:
    trainer = build_trainer(sample_dir, tmp_path / "run", tmp_path / "c", max_steps=20, save_every=4, log_every=10)
    recorder = _observed(trainer)
    _at_steps(trainer, {6}, _nan)
    with pytest.raises(TrainingFailed) as info:
        trainer.run()
    assert info.value.exit_code == 3
    message = str(info.value)
    assert "the training loss became nan at step 6" in message and "step_0000004" in message
    assert trainer.step == 8  # steps 7 and 8 ran: the flag is read at the save point, not after every step
    assert ckpt.resolve_checkpoint(tmp_path / "run").name == "step_0000004"
    assert not (tmp_path / "run" / "checkpoints" / "step_0000008").exists()
    assert [e.step for e in recorder.of(StepEnded)] == [1, 2, 3, 4, 5]
    (failed,) = recorder.of(RunFailed)
    assert failed.step == 6 and failed.reason == "non_finite" and failed.last_checkpoint.name == "step_0000004"


def test_on_nan_skip_skips_the_update_and_trains_on(sample_dir: Path, tmp_path: Path) -> None:
    trainer = build_trainer(sample_dir, tmp_path / "run", tmp_path / "c", max_steps=6, on_nan="skip")
    recorder = _observed(trainer)
    _at_steps(trainer, {3, 4}, _nan)
    weights: dict[int, torch.Tensor] = {}

    def snapshot(module, args) -> None:  # a weight as each training step starts
        if module.training:
            weights.setdefault(trainer.step + 1, module.parameter_roles().matrices[0].detach().clone())

    trainer.model.register_forward_pre_hook(snapshot)
    assert trainer.run() == 0
    steps = {e.step: e for e in recorder.of(StepEnded)}
    assert [s for s, e in steps.items() if e.skipped] == [3, 4] and math.isnan(steps[3].loss)
    assert [w.code for w in recorder.of(Warned) if w.code.startswith("nan")] == ["nan.skipped", "nan.skipped"]
    assert torch.equal(weights[3], weights[5])  # steps 3 and 4 changed nothing
    assert not torch.equal(weights[5], weights[6]) and recorder.of(RunEnded)[0].reason == "finished"
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_on_nan_skip_stops_after_too_many_skipped_steps_in_a_row(sample_dir: Path, tmp_path: Path) -> None:
    trainer = build_trainer(
        sample_dir, tmp_path / "run", tmp_path / "c", max_steps=10, on_nan="skip", max_skipped_steps=3
    )
    _at_steps(trainer, {3, 4, 5}, _nan)
    with pytest.raises(TrainingFailed, match="3 optimizer steps in a row up to step 5"):
        trainer.run()


def test_out_of_memory_is_a_training_failure_with_advice(sample_dir: Path, tmp_path: Path) -> None:
    trainer = build_trainer(sample_dir, tmp_path / "run", tmp_path / "c", max_steps=10, save_every=2)
    recorder = _observed(trainer)

    def oom(loss):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    _at_steps(trainer, {3}, oom)
    with pytest.raises(TrainingFailed) as info:
        trainer.run()
    message = str(info.value)
    assert info.value.exit_code == 3 and "out of memory on cpu at step 3" in message
    assert "lower --micro-batch-size (now 4" in message and "step_0000002" in message
    assert recorder.of(RunFailed)[0].reason == "out_of_memory"


@pytest.mark.slow
def test_tokens_per_second_counts_training_steps_only(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = build_trainer(
        sample_dir, tmp_path / "run", tmp_path / "c", max_steps=4, eval_every=2, save_every=3, log_every=2
    )
    recorder = _observed(trainer)
    slow = 0.8  # a step here takes well under slow * 0.75, even on a loaded machine
    evaluate, save = trainer.evaluate, ckpt.save_checkpoint

    def slow_evaluate():
        time.sleep(slow)
        return evaluate()

    def slow_save(*args, **kwargs):
        time.sleep(slow)
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    monkeypatch.setattr(ckpt, "save_checkpoint", slow_save)
    _at_steps(trainer, {1}, lambda loss: (time.sleep(slow), loss)[1])  # a slow first step (compilation, warm-up)
    assert trainer.run() == 0
    steps = {e.step: e for e in recorder.of(StepEnded)}
    assert steps[1].step_time >= slow
    later = [e.step_time for s, e in steps.items() if s > 1]
    assert len(later) == 3 and max(later) < 0.75 * slow, later  # no evaluation or checkpoint time in a step
    assert all(e.seconds >= slow for e in recorder.of(Evaluated) + recorder.of(CheckpointSaved))
    (end,) = recorder.of(RunEnded)
    assert end.train_seconds == pytest.approx(sum(later)) and end.tokens_per_s == pytest.approx(3 * 128 / sum(later))


def test_validation_windows_do_not_depend_on_the_micro_batch(sample_dir: Path, tmp_path: Path, capsys) -> None:
    common = ("--max-steps", "4", "--eval-every", "2", "--dropout", "0", "--eval-windows", "12")
    assert main(train_args(sample_dir, tmp_path / "a", *common)) == 0
    assert main(train_args(sample_dir, tmp_path / "b", *common, "--micro-batch-size", "1")) == 0
    capsys.readouterr()

    def vals(run: str) -> list[float]:
        return [r["val_loss"] for r in read_jsonl(tmp_path / run / "metrics.jsonl") if r["event"] == "eval"]

    assert vals("a") == pytest.approx(vals("b"), abs=1e-5) and len(vals("a")) == 2
    config = ckpt.load_checkpoint_config(ckpt.resolve_checkpoint(tmp_path / "a"))
    assert config["evaluation"]["windows"] == 12 and config["train"]["evaluation"]["windows"] == 12


def test_a_resume_that_changes_the_validation_windows_is_refused(sample_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(sample_dir, out, "--max-steps", "3", "--stop-at", "2")) == 0
    capsys.readouterr()
    code = main(["train", "--resume", str(out), "--eval-windows", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "eval_windows=16, but the run used eval_windows=8" in err
    assert main(["train", "--resume", str(out), "--micro-batch-size", "2"]) == 0  # batching may change
    assert "resume: micro_batch_size: None -> 2" in capsys.readouterr().out


def test_old_runs_counted_validation_batches() -> None:
    from lmtrain.config import build_run_config, run_config_from_dict
    from lmtrain.fields import flatten

    cfg = build_run_config({"preset": "micro", "batch_size": 8})
    saved = cfg.to_dict() | {"train": flatten(cfg.train)}  # lmtrain 0.1 wrote the training keys in one table
    del saved["train"]["eval_windows"]
    saved["train"]["eval_batches"] = 5
    assert run_config_from_dict(saved).train.evaluation.windows == 40


def test_toml_paths_expand_home_and_start_at_the_file(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    home, conf, elsewhere = tmp_path / "home", tmp_path / "conf", tmp_path / "elsewhere"
    for folder in (home, conf, elsewhere):
        folder.mkdir()
    (home / "sample").symlink_to(sample_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    toml = conf / "run.toml"
    toml.write_text(
        'preset = "micro"\nd-model = 32\nn-head = 2\nn-layer = 1\nmax-seq-len = 32\nbatch-size = 4\n'
        'data-dir = "~/sample"\ncache-dir = "cache"\nout = "runs/x"\nmax-steps = 2\nwarmup = 1\n'
        'eval-windows = 4\nsample-tokens = 0\ndoctor = "off"\n'
    )
    assert main(["train", "--config", str(toml)]) == 0, capsys.readouterr().err
    saved = json.loads((conf / "runs" / "x" / "config.json").read_text())
    assert saved["data"]["data_dir"] == str((home / "sample").resolve()) == str(sample_dir.resolve())
    assert saved["data"]["cache_dir"] == str(conf / "cache") and (conf / "cache" / "prepared").is_dir()
    assert not (elsewhere / "runs").exists()
    (conf / "rel.toml").write_text(toml.read_text().replace('"~/sample"', f'"{os.path.relpath(sample_dir, conf)}"'))
    assert main(["train", "--config", str(conf / "rel.toml"), "--out", "flag-out"]) == 0
    assert (elsewhere / "flag-out" / "config.json").is_file()  # a flag's path starts at the working folder


def test_out_of_memory_is_recognised_by_type_on_every_device() -> None:
    from lmtrain.runtime import is_out_of_memory

    with pytest.raises(RuntimeError) as cpu:
        torch.empty(10**13)  # 40 TB: torch's CPU allocator raises a plain RuntimeError
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("can't allocate memory for my cache"))  # a user's own words
    assert not is_out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"))


def test_every_failure_reason_has_its_advice() -> None:
    from lmtrain.config import build_run_config
    from lmtrain.train.events import EndReason, FailureReason
    from lmtrain.train.failures import ADVICE, failure_message

    assert set(ADVICE) == set(FailureReason)
    cfg = build_run_config({"preset": "micro"})
    for reason in FailureReason:
        message = failure_message(reason, "it broke", cfg, Path("runs/x"), None)
        assert message.startswith("it broke; nothing was saved") and len(message) > 80
    assert json.dumps({"reason": FailureReason.NON_FINITE}) == '{"reason": "non_finite"}'
    assert f"{EndReason.STOP_AT}" == "stop_at" == EndReason("stop_at")
    with pytest.raises(AttributeError):
        FailureReason.NON_FINTE  # noqa: B018 - a typo fails loudly
