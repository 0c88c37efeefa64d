"""Runs written by lmtrain 0.1 (one flat table of training keys in config.json) load into the sections and resume
exactly. The fixtures are the config.json files lmtrain 0.1.0 wrote (commit 49d8417) for a run split at step 3, and
the losses of the same run made in one go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE, read_jsonl, step_losses, train_args
from lmtrain.cli import main
from lmtrain.config import build_run_config, run_config_from_dict
from lmtrain.fields import flatten

FIXTURE = REPO / "tests" / "fixtures" / "lmtrain-0.1.0"
RUN = ("--max-steps", "6", "--eval-every", "3", "--save-every", "3", "--dropout", "0.1")
"""The fixture's run (with train_args' fast model, batch 4, warmup 2, AdamW at 1e-3, 8 validation windows)."""


def old_config(name: str, cache: Path) -> dict:
    """A config.json of lmtrain 0.1, its data locations pointed at this machine's copy of the same files."""
    saved = json.loads((FIXTURE / name).read_text())
    assert saved["lmtrain_version"] == "0.1.0" and saved["train"]["optimizer"] == "adamw"  # one flat table
    saved["data"] |= {"data_dir": str(SAMPLE), "cache_dir": str(cache)}
    return saved


def test_an_old_run_config_loads_into_the_sections(tmp_path: Path) -> None:
    cfg = run_config_from_dict(old_config("run-config.json", tmp_path))
    tc = cfg.train
    assert (tc.optimizer.name, tc.optimizer.lr, tc.optimizer.grad_clip) == ("adamw", 1e-3, 1.0)
    assert (tc.schedule.kind, tc.schedule.warmup, tc.evaluation.every, tc.evaluation.windows) == ("cosine", 2, 3, 8)
    assert (tc.checkpoints.every, tc.logging.every, tc.logging.sinks) == (3, 1, ("jsonl", "tensorboard"))
    assert (tc.health.doctor, tc.distributed.parallel, tc.distributed.timeout) == ("warn", "ddp", 600.0)
    assert (tc.max_steps, tc.stop_at, tc.batch_size, cfg.model.d_model) == (6, 3, 4, 32)
    flat_before = json.loads((FIXTURE / "run-config.json").read_text())["train"]
    flat = flatten(tc)
    assert {k: flat[k] for k in flat_before} == flat_before  # every key kept its value
    new = {"tasks": None, "tasks_every": 2000, "tasks_max_per_task": 500, "tasks_dir": None}  # keys added since
    new |= {"init_from": None, "activation_checkpointing": False}
    assert {k: v for k, v in flat.items() if k not in flat_before} == new
    again = json.loads(json.dumps(cfg.to_dict()))  # written back nested, and read again
    assert again["train"]["optimizer"]["name"] == "adamw" and run_config_from_dict(again) == cfg


def test_flags_and_toml_keys_reach_their_sections() -> None:
    flags = {"eval-every": 7, "save_every": 9, "optimizer": "adamw", "schedule": "wsd", "log": "jsonl"}
    flags |= {"dist-timeout": 30, "on_nan": "skip", "lr": 2e-3, "min-lr": 1e-4, "preset": "micro"}
    tc = build_run_config(flags).train
    assert (tc.evaluation.every, tc.checkpoints.every, tc.optimizer.name, tc.schedule.kind) == (7, 9, "adamw", "wsd")
    assert (tc.logging.sinks, tc.distributed.timeout, tc.health.on_nan) == (("jsonl",), 30.0, "skip")
    assert (tc.optimizer.lr, tc.schedule.min_lr, tc.final_lr) == (2e-3, 1e-4, 1e-4)
    with pytest.raises(Exception, match="unknown key 'every'"):
        build_run_config({"every": 3})  # a field's name inside its section is not a key users type


def test_a_run_of_lmtrain_0_1_resumes_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    old_run = ("--stop-at", "3", "--cache-dir", str(cache), "--arch", "gpt2")  # 0.1 built GPT-2 only
    assert main([*train_args(SAMPLE, out, *RUN, *old_run)]) == 0
    checkpoint = out / "checkpoints" / "step_0000003"
    for target, fixture in ((out, "run-config.json"), (checkpoint, "checkpoint-config.json")):
        (target / "config.json").write_text(json.dumps(old_config(fixture, cache), indent=2))
    assert main(["train", "--resume", str(out)]) == 0
    assert "resumed from" in capsys.readouterr().out
    straight = json.loads((FIXTURE / "straight-losses.json").read_text())
    assert {str(step): loss for step, loss in step_losses(out)} == straight["losses"]  # bit-identical to 0.1's
    evals = {str(r["step"]): r["val_loss"] for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "eval"}
    assert evals == straight["val_losses"]
    assert json.loads((out / "config.json").read_text())["train"]["optimizer"]["name"] == "adamw"  # now nested


def test_a_checkpoint_written_before_the_architecture_registry_loads_as_gpt2() -> None:
    """A checkpoint lmtrain 0.2.0 wrote (commit a2421ed: config.json without `arch`) with the logits it gave then."""
    import torch

    from lmtrain.checkpoint import load_model

    folder = REPO / "tests" / "fixtures" / "lmtrain-0.2.0-gpt2-checkpoint"
    assert "arch" not in json.loads((folder / "config.json").read_text())["model"]
    expected = json.loads((folder / "expected-logits.json").read_text())
    model, config = load_model(folder)
    assert model.config.arch == "gpt2" and type(model).__name__ == "GPT"
    with torch.no_grad():
        logits, _ = model(torch.tensor(expected["input"]))
    torch.testing.assert_close(logits[0, 0], torch.tensor(expected["logits_first_last"][0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits[0, -1], torch.tensor(expected["logits_first_last"][1]), rtol=0, atol=1e-6)
    assert run_config_from_dict(config).model == model.config
