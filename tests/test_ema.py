"""--ema: an averaged copy of the weights, used for evaluation and `best`, saved beside the raw weights, resumable,
and selectable by eval, generate and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import read_jsonl, train_args
from lmtrain import checkpoint as ckpt
from lmtrain.cli import main
from lmtrain.model.gpt import GPT, GPTConfig
from lmtrain.train.ema import EMA

CFG = GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=16, d_ff=64, max_seq_len=8, dropout=0.0)


def test_the_average_follows_its_formula_and_swapping_restores_the_weights() -> None:
    torch.manual_seed(0)
    model = GPT(CFG)
    ema = EMA(model, 0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
    for avg, e in zip(ema.shadow, expected):
        torch.testing.assert_close(avg, e)
    before = [p.detach().clone() for p in model.parameters()]
    with ema.swapped():
        for p, avg in zip(model.parameters(), ema.shadow):
            assert torch.equal(p, avg)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)  # bit for bit


def _eval(run: Path, capsys, *extra: str) -> float:
    assert main(["eval", str(run), "--split", "valid", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["nll_per_token"]


@pytest.mark.slow
def test_a_run_with_ema_evaluates_saves_and_resumes_its_average(sample_dir: Path, tmp_path: Path, capsys) -> None:
    run = ("--ema", "0.8", "--max-steps", "6", "--save-every", "3", "--eval-every", "3")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(sample_dir, straight, *run)) == 0
    assert main(train_args(sample_dir, resumed, *run, "--stop-at", "3")) == 0
    assert main(["train", "--resume", str(resumed)]) == 0
    capsys.readouterr()
    last = ckpt.resolve_checkpoint(straight, "latest")
    assert (last / ckpt.EMA_FILE).is_file()
    assert json.loads((last / ckpt.CONFIG_FILE).read_text())["checkpoint"]["val_weights"] == "ema"
    raw, avg = ckpt.load_weights(last, "raw"), ckpt.load_weights(last, "ema")
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)
    again = ckpt.load_weights(ckpt.resolve_checkpoint(resumed, "latest"), "ema")
    for name, tensor in avg.items():  # the average resumes exactly
        torch.testing.assert_close(again[name], tensor, atol=1e-6, rtol=0)
    evals = [r["val_loss"] for r in read_jsonl(straight / "metrics.jsonl") if r.get("event") == "eval"]
    ema_loss, raw_loss = _eval(straight, capsys, "--weights", "ema"), _eval(straight, capsys, "--weights", "raw")
    assert ema_loss != raw_loss and _eval(straight, capsys) == ema_loss  # auto picks the average
    assert evals[-1] == pytest.approx(ema_loss, abs=0.05)  # the trainer scored the average (on its 8 windows)
    exported = {}
    for which in ("raw", "ema"):
        out = tmp_path / f"hf-{which}"
        assert main(["export", str(straight), "--out", str(out), "--weights", which]) == 0
        exported[which] = (out / "model.safetensors").read_bytes()
    assert exported["raw"] != exported["ema"]


def test_asking_for_ema_weights_a_run_did_not_keep_is_one_line_exit_2(sample_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(train_args(sample_dir, run, "--max-steps", "3")) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "valid", "--weights", "ema"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no EMA weights (its run was trained without --ema); use --weights raw" in err[0]
    assert main(["train", *train_args(sample_dir, tmp_path / "bad", "--ema", "1.5")[1:]]) == 2
    assert "ema=1.5 must be between 0 and 1" in capsys.readouterr().err
