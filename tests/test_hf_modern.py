"""Parity of the modern block with transformers' LlamaForCausalLM and Qwen3ForCausalLM: every exportable combination
of MLP, QK-norm, tying, grouped-query attention and padding gives the same logits (fp32, 1e-4) both ways; what no
class computes is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import randomised
from lmtrain.errors import ConfigError
from lmtrain.model.config import ModernConfig
from lmtrain.model.hf_llama import from_hf_config, from_hf_state_dict, to_hf_config, to_hf_state_dict
from lmtrain.model.registry import build_model

transformers = pytest.importorskip("transformers")

BASE = ModernConfig(vocab_size=211, n_layer=3, n_head=4, d_model=64, d_ff=160, max_seq_len=48, rope_theta=500.0)
COMBINATIONS = {
    "qwen3-relu2-tied": ({}, "Qwen3ForCausalLM"),
    "qwen3-swiglu-untied-gqa": ({"mlp": "swiglu", "tie": False, "n_kv_head": 2}, "Qwen3ForCausalLM"),
    "qwen3-relu2-mqa-padded": ({"n_kv_head": 1, "pad_vocab_to": 64}, "Qwen3ForCausalLM"),
    "llama-swiglu-tied-gqa": ({"mlp": "swiglu", "qk_norm": False, "n_kv_head": 2}, "LlamaForCausalLM"),
    "llama-relu2-untied-padded": ({"qk_norm": False, "tie": False, "pad_vocab_to": 64}, "LlamaForCausalLM"),
    "qwen2-swiglu-qkv-bias": (
        {"mlp": "swiglu", "qk_norm": False, "qkv_bias": True, "n_kv_head": 2},
        "Qwen2ForCausalLM",
    ),
    "qwen3-wide-heads-qkv-bias": ({"head_dim": 32, "qkv_bias": True, "n_kv_head": 2}, "Qwen3ForCausalLM"),
    "llama-narrow-heads-llama3-rope": (
        {
            "mlp": "swiglu",
            "qk_norm": False,
            "head_dim": 8,
            "rope_scaling": "llama3",
            "rope_factor": 8.0,
            "rope_original_max_seq_len": 16,
        },
        "LlamaForCausalLM",
    ),
    "llama-linear-rope": ({"qk_norm": False, "rope_scaling": "linear", "rope_factor": 4.0}, "LlamaForCausalLM"),
}


def _hf(cfg: ModernConfig):
    fields = to_hf_config(cfg)
    hf_cfg = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    return transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager").eval()


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_lmtrain_weights_in_transformers_give_the_same_logits(name: str) -> None:
    overrides, cls = COMBINATIONS[name]
    cfg = dataclasses.replace(BASE, **overrides)
    torch.manual_seed(0)
    ours = randomised(build_model(cfg), scale=0.1)
    hf = _hf(cfg)
    assert type(hf).__name__ == cls
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg, include_head=True), strict=True)
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.max_seq_len))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    diff = (got - expected).abs().max().item()
    assert got.shape == expected.shape and diff < 1e-4, diff


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_transformers_weights_in_lmtrain_give_the_same_logits(name: str) -> None:
    overrides, _ = COMBINATIONS[name]
    cfg = dataclasses.replace(BASE, **overrides)
    torch.manual_seed(1)
    hf = randomised(_hf(cfg), scale=0.1)
    if cfg.mlp == "relu2":  # the exact gated form of ReLU²: gate and up hold the same matrix
        with torch.no_grad():
            for layer in hf.model.layers:
                layer.mlp.up_proj.weight.copy_(layer.mlp.gate_proj.weight)
    with torch.no_grad():
        for layer in hf.model.layers:
            if layer.self_attn.o_proj.bias is not None:  # Qwen3's attention_bias: lmtrain exports it as zero
                layer.self_attn.o_proj.bias.zero_()
    back = from_hf_config(to_hf_config(cfg))
    assert back == dataclasses.replace(cfg, pad_vocab_to=1)
    ours = build_model(back).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), back), strict=True)
    idx = torch.randint(0, cfg.vocab_size, (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_what_no_transformers_class_computes_is_refused() -> None:
    with pytest.raises(ConfigError, match="--logit-softcap 30: no transformers class"):
        to_hf_config(dataclasses.replace(BASE, logit_softcap=30.0))
    with pytest.raises(ConfigError, match="--mlp gelu"):
        to_hf_config(dataclasses.replace(BASE, mlp="gelu"))
    hf = to_hf_config(BASE)
    for change, message in (
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"mlp_bias": True}, "mlp_bias=true"),
        ({"use_sliding_window": True}, "use_sliding_window=true"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_type='yarn'"),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        ({"model_type": "mistral"}, "model_type='mistral'"),
    ):
        with pytest.raises(ConfigError, match=message):
            from_hf_config(hf | change)


def test_rope_scaling_is_read_over_rope_parameters_as_transformers_reads_it() -> None:
    """A config.json with both keys: transformers 5 computes with rope_scaling (a YaRN one beside a default
    rope_parameters loads as YaRN), so lmtrain reads it first and refuses the kind it does not compute."""
    transformers = pytest.importorskip("transformers")
    default = {"rope_type": "default", "rope_theta": 10000.0}
    yarn = to_hf_config(BASE) | {
        "rope_parameters": default,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
    }
    assert transformers.Qwen3Config(**yarn).rope_parameters["rope_type"] == "yarn"
    with pytest.raises(ConfigError, match="rope_type='yarn'"):
        from_hf_config(yarn)
    linear = yarn | {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    theirs = transformers.Qwen3Config(**linear).rope_parameters
    cfg = from_hf_config(linear)
    assert theirs["rope_type"] == "linear" and linear["rope_theta"] != default["rope_theta"]
    assert (cfg.rope_scaling, cfg.rope_factor, cfg.rope_theta) == ("linear", 2.0, theirs["rope_theta"])


def test_a_non_zero_output_projection_bias_is_refused() -> None:
    cfg = dataclasses.replace(BASE, qkv_bias=True)  # Qwen3 with attention_bias: o_proj has a bias, exported as zero
    hf = randomised(_hf(cfg), scale=0.1)
    with pytest.raises(ConfigError, match="model.layers.0.self_attn.o_proj.bias is not zero"):
        from_hf_state_dict(hf.state_dict(), from_hf_config(to_hf_config(cfg)))


def test_a_gated_relu_that_is_not_relu_squared_is_refused() -> None:
    cfg = dataclasses.replace(BASE, qk_norm=False)
    state = randomised(_hf(cfg), scale=0.1).state_dict()  # gate != up
    with pytest.raises(ConfigError, match="layer 0: a relu MLP with gate != up"):
        from_hf_state_dict(state, from_hf_config(to_hf_config(cfg)))
