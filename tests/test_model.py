"""Every architecture's model: shapes, causality, loss at initialisation, overfitting, no silent truncation."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import MODEL_VARIANTS, randomised
from lmtrain.model.base import CausalLM
from lmtrain.model.config import GPTConfig, ModelConfig
from lmtrain.model.gpt import GPT
from lmtrain.model.registry import build_model
from lmtrain.presets import get_preset

TINY = GPTConfig(vocab_size=97, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=16, dropout=0.0)
VARIANTS = pytest.mark.parametrize("cfg", list(MODEL_VARIANTS.values()), ids=list(MODEL_VARIANTS))


def _model(cfg: ModelConfig = TINY, seed: int = 0) -> CausalLM:
    torch.manual_seed(seed)
    return build_model(cfg).eval()


@VARIANTS
def test_shapes(cfg: ModelConfig) -> None:
    model = _model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (3, 11))
    logits, loss = model(idx)
    assert logits.shape == (3, 11, cfg.vocab_size) and loss is None
    logits, loss = model(idx, idx)
    assert logits is None and loss is not None and loss.shape == () and torch.isfinite(loss)


@VARIANTS
def test_causality_changing_token_t_changes_no_earlier_logit(cfg: ModelConfig) -> None:
    model = randomised(_model(cfg))  # zero-initialised projections would hide a leak from later positions
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    base, _ = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % cfg.vocab_size
        out, _ = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
        assert not torch.allclose(out[:, t:], base[:, t:])


@pytest.mark.parametrize("arch", ["gpt2", "modern"])
@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_loss_at_initialisation_is_about_ln_vocab(preset: str, arch: str) -> None:
    cfg = get_preset(preset, arch)
    model = _model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (4, 64))
    with torch.no_grad():
        _, loss = model(idx[:, :-1], idx[:, 1:])
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.3


@VARIANTS
def test_tiny_model_overfits_one_batch(cfg: ModelConfig) -> None:
    model = _model(cfg).train()
    idx = torch.randint(0, cfg.vocab_size, (4, 17), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5


@VARIANTS
def test_input_longer_than_max_seq_len_is_an_error(cfg: ModelConfig) -> None:
    model = _model(cfg)
    with pytest.raises(ValueError, match="longer than max_seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@VARIANTS
def test_loss_ignores_targets_of_minus_100(cfg: ModelConfig) -> None:
    model = randomised(_model(cfg))
    idx = torch.randint(0, cfg.vocab_size, (2, 9))
    x, y = idx[:, :-1], idx[:, 1:].clone()
    y[0, 3:] = -100
    _, loss = model(x, y)
    logits, _ = model(x)
    keep = y != -100
    manual = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    torch.testing.assert_close(loss, manual)


def test_gpt2_initialisation() -> None:
    cfg = GPTConfig(vocab_size=512, n_layer=4, n_head=4, d_model=256, d_ff=1024, max_seq_len=64)
    model = _model(cfg)
    assert isinstance(model, GPT)
    h0 = model.transformer.h[0]
    assert h0.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert h0.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert h0.attn.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(h0.attn.c_attn.bias) == 0
    assert torch.all(h0.ln_1.weight == 1)


def test_output_projection_is_tied_to_token_embedding() -> None:
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and "transformer.wte.weight" in names
    x = torch.randint(0, TINY.vocab_size, (1, 4))
    logits, _ = model(x)
    logits.sum().backward()
    assert model.transformer.wte.weight.grad is not None


@VARIANTS
def test_dropout_only_in_train_mode(cfg: ModelConfig) -> None:
    import dataclasses

    cfg = dataclasses.replace(cfg, dropout=0.5)
    model = randomised(_model(cfg))
    idx = torch.randint(0, cfg.vocab_size, (2, 8))
    a, _ = model(idx)
    b, _ = model(idx)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.train()
    c, _ = model(idx)
    assert not torch.allclose(a, c)
