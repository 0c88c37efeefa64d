"""Generation: the KV cache gives the same tokens, seeds repeat, EOT and the context limit stop it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import LMTRAIN, MODEL_VARIANTS, randomised
from lmtrain.eval.generate import filter_logits, generate
from lmtrain.model.base import CausalLM
from lmtrain.model.registry import build_model

CONFIGS = {name: dataclasses.replace(cfg, n_layer=3, max_seq_len=64) for name, cfg in MODEL_VARIANTS.items()}
ARCHS = pytest.mark.parametrize("variant", list(CONFIGS))


def _model(variant: str = "gpt2") -> CausalLM:
    torch.manual_seed(0)
    return randomised(build_model(CONFIGS[variant]), scale=0.2)  # sharper distributions than at initialisation


@ARCHS
@pytest.mark.parametrize("prompt_len", [1, 5, 30])
def test_cached_and_uncached_greedy_decoding_give_identical_tokens(prompt_len: int, variant: str) -> None:
    model = _model(variant)
    prompt = torch.randint(0, 97, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    cached = generate(model, prompt, 25, temperature=0, use_cache=True)
    uncached = generate(model, prompt, 25, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached) and cached.shape == (2, prompt_len + 25)


@pytest.mark.parametrize("training", [True, False])
def test_every_evaluation_runs_in_eval_mode_and_restores_the_models_mode(training: bool) -> None:
    """Generation, the validation loss and perplexity scoring each run the model in eval mode and leave it in the
    mode it was in, also when they fail."""
    import numpy as np

    from lmtrain.eval.loss import loss_sums
    from lmtrain.eval.perplexity import score_tokens
    from lmtrain.runtime import eval_mode

    model = _model().train(training)
    seen: list[bool] = []
    model.blocks()[0].register_forward_pre_hook(lambda m, _: seen.append(m.training))  # every evaluation calls it
    generate(model, torch.zeros(1, 2, dtype=torch.long), 3, temperature=0)
    x = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(1))
    loss_sums(model, [(x, x)])
    assert score_tokens(model, np.arange(20) % 97, context=8, stride=8, batch_size=2, eot_id=0).tokens == 20
    assert seen == [False] * 3 + [False] + [False] * 2 and model.training is training
    with pytest.raises(ValueError), eval_mode(model):
        assert not model.training
        raise ValueError("the block failed")
    assert model.training is training


@ARCHS
def test_cached_and_uncached_sampling_give_identical_tokens(variant: str) -> None:
    model, prompt = _model(variant), torch.randint(0, 97, (3, 4), generator=torch.Generator().manual_seed(3))
    runs = [
        generate(model, prompt, 40, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(5), use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])


@ARCHS
def test_cached_logits_match_a_full_forward(variant: str) -> None:
    model = _model(variant)
    seq = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        full, _ = model(seq)
        cache = model.new_cache(batch_size=2)
        assert cache.k.shape == (3, 2, model.config.kv_heads, 64, model.config.head_size)  # (L, B, nkv, T, hs)
        parts = [
            model(seq[:, :7], cache=cache)[0],
            model(seq[:, 7:8], cache=cache)[0],
            model(seq[:, 8:40], cache=cache)[0],
        ]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_the_same_seed_gives_the_same_sample() -> None:
    model, prompt = _model(), torch.tensor([[1, 2, 3]])
    a = generate(model, prompt, 30, temperature=1.0, generator=torch.Generator().manual_seed(11))
    b = generate(model, prompt, 30, temperature=1.0, generator=torch.Generator().manual_seed(11))
    c = generate(model, prompt, 30, temperature=1.0, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generation_stops_at_endoftext() -> None:
    model, prompt = _model(), torch.tensor([[4, 5, 6]])
    free = generate(model, prompt, 20, temperature=0)
    eot = int(free[0, 3 + 4])  # make the 5th greedy token the end-of-text id
    stopped = generate(model, prompt, 20, temperature=0, eot_id=eot)
    first = free[0, 3:].tolist().index(eot)
    assert stopped.shape[1] == 3 + first + 1 and int(stopped[0, -1]) == eot


def test_generation_never_runs_past_max_seq_len() -> None:
    model = _model()
    out = generate(model, torch.zeros(1, 60, dtype=torch.long), 100, temperature=0)
    assert out.shape == (1, 64)
    with pytest.raises(ValueError, match="context is 64"):
        generate(model, torch.zeros(1, 65, dtype=torch.long), 1)


def test_top_k_and_top_p_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert (
        torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
        and torch.isfinite(filter_logits(logits, top_k=2)[0, :2]).all()
    )
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7 <= 0.8
    assert torch.isfinite(filter_logits(logits, top_p=0.5))[0].tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7))[0].tolist() == [False, True, False, True]


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LMTRAIN, "generate", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_same_seed_same_text_and_stop_reasons(trained_run: Path) -> None:
    common = [
        "--prompt",
        " = Valkyria Chronicles = ",
        "--max-new-tokens",
        "12",
        "--num-samples",
        "2",
        "--json",
    ]
    a, b = _generate(str(trained_run), *common), _generate(str(trained_run), *common)
    assert a.returncode == 0, a.stderr
    first, second = json.loads(a.stdout), json.loads(b.stdout)
    assert first == second and len(first) == 2
    assert all(s["stop"] in ("endoftext", "max new tokens") and s["new_tokens"] <= 12 for s in first)
    greedy = _generate(str(trained_run), *common[:-3], "--temperature", "0", "--max-new-tokens", "200", "--json")
    sample = json.loads(greedy.stdout)[0]
    assert sample["stop"] in ("endoftext", "context limit")  # the micro model's context is 64 tokens
    if sample["stop"] == "context limit":
        assert "stops at the model's context of 64 tokens" in greedy.stderr
