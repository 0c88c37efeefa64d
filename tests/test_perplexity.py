"""Perplexity: every token scored once, windows and padding, strides, counts, bounded memory."""

from __future__ import annotations

import dataclasses
import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MODEL_VARIANTS, SAMPLE, randomised
from lmtrain.eval.perplexity import (
    Scores,
    perplexity_report,
    plan_windows,
    score_tokens,
    score_windows,
    window_arrays,
)
from lmtrain.model import head
from lmtrain.model.base import CausalLM
from lmtrain.model.config import GPTConfig
from lmtrain.model.gpt import GPT
from lmtrain.model.registry import build_model

EOT = 96
CONFIGS = {name: dataclasses.replace(cfg, max_seq_len=64) for name, cfg in MODEL_VARIANTS.items()}
CFG = CONFIGS["gpt2"]
VARIANTS = pytest.mark.parametrize("variant", list(CONFIGS))


def _model(variant: str = "gpt2") -> CausalLM:
    torch.manual_seed(0)
    return randomised(build_model(CONFIGS[variant]))


def _tokens(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, EOT, n).astype(np.uint16)


@pytest.mark.parametrize("n,context,stride", [(40, 64, 64), (100, 16, 16), (100, 16, 5), (7, 4, 1), (64, 64, 64)])
def test_every_token_is_scored_exactly_once(n: int, context: int, stride: int) -> None:
    stream = np.arange(n + 1)
    seen = []
    for begin, end, first in plan_windows(n, context, stride):
        assert end - begin <= context
        _, targets = window_arrays(stream, (begin, end, first), context=context, pad_id=-1)
        seen += targets[targets != -100].tolist()
    assert seen == list(range(1, n + 1))


def test_non_overlapping_windows_and_the_padded_last_one() -> None:
    windows = list(plan_windows(100, 32, 32))
    assert windows == [(0, 32, 1), (32, 64, 33), (64, 96, 65), (96, 128, 97)]
    stream = np.arange(101)
    inputs, targets = window_arrays(stream, (96, 128, 97), context=32, pad_id=-1)
    assert inputs[:5].tolist() == [96, 97, 98, 99, 100] and (inputs[5:] == -1).all()
    assert targets[:4].tolist() == [97, 98, 99, 100] and (targets[4:] == -100).all()


def test_sliding_windows_score_their_last_stride_tokens_with_earlier_context() -> None:
    stream = np.arange(101)
    (b0, e0, f0), (b1, e1, f1), *_ = plan_windows(100, 32, 8)
    assert (b0, e0, f0) == (0, 8, 1) and (b1, e1, f1) == (0, 16, 9)
    late = list(plan_windows(100, 32, 8))[6]  # scores targets 49..56 from inputs 24..55
    inputs, targets = window_arrays(stream, late, context=32, pad_id=-1)
    assert late == (24, 56, 49) and inputs.tolist() == list(range(24, 56))
    assert targets[targets != -100].tolist() == list(range(49, 57)) and (targets[:24] == -100).all()


def test_the_first_token_is_conditioned_on_endoftext() -> None:
    stream = np.concatenate([[EOT], _tokens(10)])
    inputs, targets = window_arrays(stream, (0, 16, 1), context=16, pad_id=EOT)
    assert inputs[0] == EOT and targets[0] == stream[1]


@VARIANTS
def test_one_window_equals_several_windows_with_a_padded_last_one(variant: str) -> None:
    model, tokens = _model(variant), _tokens(40)
    one = score_tokens(model, tokens, context=64, stride=64, batch_size=4, eot_id=EOT)
    several = score_tokens(model, tokens, context=64, stride=16, batch_size=2, eot_id=EOT)
    assert one.windows == 1 and several.windows == 3 and one.tokens == several.tokens == 40
    assert several.nll == pytest.approx(one.nll, rel=1e-6)


@pytest.mark.parametrize("stride", [1, 3, 7, 16, 24, 40, 64])
@VARIANTS
def test_any_stride_gives_the_same_total_when_the_context_covers_the_split(stride: int, variant: str) -> None:
    model, tokens = _model(variant), _tokens(40)
    reference = score_tokens(model, tokens, context=64, stride=64, batch_size=8, eot_id=EOT)
    got = score_tokens(model, tokens, context=64, stride=stride, batch_size=8, eot_id=EOT)
    assert got.nll == pytest.approx(reference.nll, rel=1e-6)


@VARIANTS
def test_the_total_is_the_sum_of_per_token_losses_of_one_forward(variant: str) -> None:
    model, tokens = _model(variant), _tokens(30)
    stream = torch.as_tensor(np.concatenate([[EOT], tokens]).astype(np.int64))[None]
    with torch.no_grad():
        logits, _ = model(stream[:, :-1])
    expected = torch.nn.functional.cross_entropy(logits[0], stream[0, 1:], reduction="sum").item()
    assert score_tokens(model, tokens, context=64, stride=64, batch_size=1, eot_id=EOT).nll == pytest.approx(
        expected, rel=1e-6
    )


def test_logits_are_never_held_for_more_than_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokens = _model(), _tokens(500)
    alive: list[weakref.ref] = []
    original = torch.logsumexp

    def logsumexp(logits: torch.Tensor, dim: int) -> torch.Tensor:  # sees every chunk's logits (V, rows)
        assert all(ref() is None for ref in alive), "earlier logits are still alive"
        assert logits.shape == (CFG.vocab_size, logits.shape[1]) and logits.shape[1] <= head.CPU_EVAL_ROWS
        alive.append(weakref.ref(logits))
        return original(logits, dim=dim)

    monkeypatch.setattr(torch, "logsumexp", logsumexp)
    monkeypatch.setattr(head, "CPU_EVAL_ROWS", 8)
    scores = score_tokens(model, tokens, context=32, stride=8, batch_size=4, eot_id=EOT)
    assert scores.windows == 63 and scores.tokens == 500 and len(alive) >= 16


@VARIANTS
def test_training_windows_score_what_the_trainer_validates_on(variant: str) -> None:
    """`score_windows` (`lmtrain eval --windows N`) scores what the trainer validates on: the first N windows of
    16 + 1 tokens cut back to back from the split's start, every target after the window's first token, in any
    batching, checked against the full logits' log-softmax in float64 window by window; 0 means every whole window,
    the tail unscored."""
    model, tokens = _model(variant), _tokens(200)
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(5):
            window = torch.as_tensor(tokens[16 * k : 16 * k + 17], dtype=torch.long)
            logp = torch.log_softmax(model(window[None, :-1])[0][0].double(), dim=-1)  # (16, V)
            total -= float(logp[torch.arange(16), window[1:]].sum())
            count += 16
    for batch_size in (1, 3, 8):
        scores = score_windows(model, tokens, context=16, windows=5, batch_size=batch_size)
        assert (scores.tokens, scores.windows) == (count, 5) == (80, 5)
        assert scores.nll == pytest.approx(total, rel=1e-6)
    every = score_windows(model, tokens, context=16, windows=0, batch_size=4)
    assert (every.windows, every.tokens) == (12, 192)  # (200 - 1) // 16 windows; the last 7 tokens are not targets
    assert score_windows(model, tokens, context=16, windows=50, batch_size=4).windows == 12
    with pytest.raises(ValueError, match="no window of 64 \\+ 1 fits"):
        score_windows(model, tokens[:64], context=64, windows=0, batch_size=1)


def test_report_formulas() -> None:
    report = perplexity_report(
        Scores(nll=1000.0, tokens=400, windows=2), original_tokens=300, n_bytes=2000, context=8, stride=8, seconds=1.0
    )
    assert report.nll_per_token == 2.5 and report.token_ppl == pytest.approx(math.exp(2.5))
    assert report.word_ppl == pytest.approx(math.exp(1000 / 300))
    assert report.bits_per_byte == pytest.approx(1000 / math.log(2) / 2000)
    part = perplexity_report(
        Scores(1000.0, 400, 2), original_tokens=300, n_bytes=2000, context=8, stride=8, seconds=1.0, whole=False
    )
    assert part.nll_per_token == 2.5 and part.word_ppl is None and part.bits_per_byte is None  # not the whole split


@pytest.mark.slow
@pytest.mark.parametrize("run", ["trained_run", "trained_modern_run"])
def test_sliding_window_perplexity_is_at_most_non_overlapping_for_a_trained_model(
    run: str, request: pytest.FixtureRequest, tokenizer
) -> None:
    from lmtrain.checkpoint import load_model, resolve_checkpoint

    model, _ = load_model(resolve_checkpoint(request.getfixturevalue(run)))
    tokens = np.asarray(tokenizer.encode((SAMPLE / "wiki.valid.raw").read_text()[:20000]))
    flat = score_tokens(model, tokens, context=64, stride=64, batch_size=16, eot_id=tokenizer.eot_id)
    sliding = score_tokens(model, tokens, context=64, stride=16, batch_size=16, eot_id=tokenizer.eot_id)
    assert sliding.tokens == flat.tokens == len(tokens)
    assert sliding.nll < flat.nll


def _eval_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    from lmtrain.cli import main

    code = main(["eval", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["trained_run", "trained_modern_run"])
def test_eval_counts_on_the_sample(run: str, request: pytest.FixtureRequest, sample_dir: Path, capsys) -> None:
    folder = request.getfixturevalue(run)
    result = _eval_json(capsys, str(folder), "--data-dir", str(sample_dir), "--split", "test", "--batch-size", "32")
    assert (result["tokens"], result["original_tokens"], result["bytes"]) == (27_674, 23_630, 125_729)
    for key in ("nll_per_token", "token_ppl", "word_ppl", "bits_per_byte", "seconds"):
        assert key in result
    assert result["word_ppl"] > result["token_ppl"]  # fewer words than tokens share the same total NLL
    assert result["token_ppl"] == pytest.approx(math.exp(result["nll_per_token"]))


@pytest.mark.slow
def test_eval_counts_on_the_wikitext103_test_split(
    tmp_path: Path, wikitext103_test_raw: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lmtrain eval` on the whole WikiText-103 test split reports its published counts and scores every token once.
    The NLL of each window is replaced by a count of its targets: what is checked here is which tokens are scored
    (the head's values are checked against cross-entropy in test_head.py, the windows above), and the head of a
    50,257-token vocabulary over 286,282 targets would cost this test most of a minute."""
    from lmtrain.checkpoint import write_checkpoint

    scored: list[int] = []

    def count_only(self, h, targets):
        scored.append(int((targets != -100).sum()))
        return torch.zeros((), dtype=torch.float64), scored[-1]

    monkeypatch.setattr(CausalLM, "nll", count_only)
    cfg = GPTConfig(n_layer=1, n_head=1, d_model=8, d_ff=32, max_seq_len=512)
    torch.manual_seed(0)
    ckpt = write_checkpoint(tmp_path / "ckpt", GPT(cfg).state_dict(), {"model": cfg.__dict__})
    result = _eval_json(
        capsys,
        str(ckpt),
        "--dataset",
        "wikitext-103",
        "--data-dir",
        str(wikitext103_test_raw.parent),
        "--split",
        "test",
        "--batch-size",
        "16",
    )
    assert (result["tokens"], result["original_tokens"], result["bytes"]) == (286_282, 245_569, 1_290_590)
    assert result["windows"] == math.ceil(286_282 / 512) and sum(scored) == 286_282 and len(scored) == 35


def test_the_windows_of_an_evaluation_come_from_the_training_unless_asked() -> None:
    from lmtrain.errors import ConfigError
    from lmtrain.eval.checkpoint_eval import EVAL_BATCH_TOKENS, EvalRequest, eval_windows

    model = CONFIGS["gpt2"]  # max_seq_len 64
    trained = eval_windows(model, {"seq_len": 32}, EvalRequest())
    assert (trained.context, trained.stride, trained.batch_size, trained.notes) == (32, 32, EVAL_BATCH_TOKENS // 32, ())
    longer = eval_windows(model, {"seq_len": 32}, EvalRequest(context=64, stride=16, batch_size=3))
    assert (longer.context, longer.stride, longer.batch_size) == (64, 16, 3) and "positions past them" in longer.notes[
        0
    ]
    assert eval_windows(model, {}, EvalRequest()).context == 64  # no recorded window: the model's context
    for request, message in (
        (EvalRequest(context=65), "--context 65 must be between 1 and the model's max_seq_len=64"),
        (EvalRequest(stride=40), "--stride 40 must be between 1 and the context (32)"),
        (EvalRequest(batch_size=0), "--batch-size 0 must be at least 1"),
        (EvalRequest(windows=-1), "--windows -1 takes whole training windows"),
        (EvalRequest(windows=4, stride=16), "--windows 4 takes whole training windows: give a count >= 0"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            eval_windows(model, {"seq_len": 32}, request)


@pytest.mark.slow
def test_a_checkpoint_is_evaluated_by_one_library_call(trained_run: Path, tmp_path: Path) -> None:
    """`evaluate_checkpoint` works out what `lmtrain eval` prints: the run's data folder and window, its tokenizer."""
    from lmtrain.data.datasets import DataPaths
    from lmtrain.eval.checkpoint_eval import EvalRequest, evaluate_checkpoint

    paths = DataPaths(data_dir=None, env_dir=None, cache_dir=tmp_path / "cache", download=False)
    result = evaluate_checkpoint(trained_run, EvalRequest(split="valid", device="cpu"), paths, log=lambda _: None)
    report = result.report
    assert (result.dataset, result.split, result.checkpoint.parent.name) == ("wikitext-103", "valid", "checkpoints")
    assert (report.tokens, report.context, report.stride) == (
        10_819,
        64,
        64,
    )  # the sample's valid split, trained window
    assert report.token_ppl == pytest.approx(math.exp(report.nll_per_token)) and result.to_json()["split"] == "valid"
