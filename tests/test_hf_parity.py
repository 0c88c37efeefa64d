"""Parity with transformers' GPT2LMHeadModel: the same weights give the same logits (fp32, 1e-4)."""

from __future__ import annotations

import pytest
import torch

from lmtrain.model.config import GPTConfig
from lmtrain.model.gpt import GPT
from lmtrain.model.hf_gpt2 import from_hf_config, from_hf_state_dict, to_hf_config, to_hf_state_dict

transformers = pytest.importorskip("transformers")

CFG = GPTConfig(vocab_size=211, n_layer=3, n_head=4, d_model=64, d_ff=192, max_seq_len=48, dropout=0.0)


def _randomised(cfg: GPTConfig) -> GPT:
    """A model whose every parameter (LayerNorms and biases too) holds random values."""
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _hf_model(cfg: GPTConfig):
    hf_cfg = transformers.GPT2Config(**to_hf_config(cfg))
    hf_cfg._attn_implementation = "eager"  # an attention computed independently of SDPA
    return transformers.GPT2LMHeadModel(hf_cfg).eval()


def test_lmtrain_weights_in_transformers_give_the_same_logits() -> None:
    ours = _randomised(CFG)
    hf = _hf_model(CFG)
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), CFG, include_head=True), strict=True)
    idx = torch.randint(0, CFG.vocab_size, (2, CFG.max_seq_len))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_transformers_weights_in_lmtrain_give_the_same_logits() -> None:
    torch.manual_seed(1)
    hf = _hf_model(CFG)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = from_hf_config(to_hf_config(CFG))
    assert cfg == CFG
    ours = GPT(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict()), strict=True)
    idx = torch.randint(0, CFG.vocab_size, (3, 20))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_conv1d_weights_are_transposed_and_others_are_not() -> None:
    state = _randomised(CFG).state_dict()
    hf_state = to_hf_state_dict(state, CFG)
    key = "transformer.h.0.attn.c_attn.weight"
    assert hf_state[key].shape == (CFG.d_model, 3 * CFG.d_model)
    torch.testing.assert_close(hf_state[key], state[key].t())
    assert hf_state["transformer.wpe.weight"] is state["transformer.wpe.weight"]
    back = from_hf_state_dict(hf_state)
    assert set(back) == set(state)
    for name, value in state.items():
        torch.testing.assert_close(back[name], value, rtol=0, atol=0)


def test_untied_head_is_refused() -> None:
    from lmtrain.errors import ConfigError

    hf_state = to_hf_state_dict(_randomised(CFG).state_dict(), CFG, include_head=True)
    hf_state["lm_head.weight"] = hf_state["lm_head.weight"] + 1
    with pytest.raises(ConfigError, match="lm_head.weight differs"):
        from_hf_state_dict(hf_state)


def test_unsupported_hf_config_is_refused() -> None:
    from lmtrain.errors import ConfigError

    hf_cfg = to_hf_config(CFG) | {"activation_function": "relu"}
    with pytest.raises(ConfigError, match="activation_function='relu'"):
        from_hf_config(hf_cfg)
