"""The published configurations of the models people start from (tests/fixtures/released/), depth cut to 2 layers and
everything else as released, with random weights: transformers' weights in lmtrain and lmtrain's in transformers give
the same logits (fp32, 1e-4), at the start of a sequence and at the end of the context each supports (where Llama-3's rotary
scaling matters), and the exported config.json builds the released class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmtrain.interop.hf.read import adapter_for
from lmtrain.model.packing import Packing
from lmtrain.model.registry import build_model
from lmtrain.model.rope import inv_frequencies

transformers = pytest.importorskip("transformers")

RELEASED = Path(__file__).parent / "fixtures" / "released"
MODELS = {
    "SmolLM2-135M": "LlamaForCausalLM",
    "Qwen2.5-0.5B": "Qwen2ForCausalLM",
    "Qwen3-0.6B": "Qwen3ForCausalLM",
    "Llama-3.2-1B": "LlamaForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
LAYERS = 2


def released(name: str) -> dict:
    """The released config.json with its depth cut to LAYERS."""
    config = json.loads((RELEASED / f"{name}.json").read_text())
    config["n_layer" if config["model_type"] == "gpt2" else "num_hidden_layers"] = LAYERS
    return config


def _hf(config: dict):
    fields = dict(config)
    hf_cfg = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def _perturbed(model, seed: int):
    """`model` with noise (0.02) on every parameter but the token embedding (the largest tensor, a plain lookup, with
    a random init of its own): the released vocabularies make it most of the time otherwise."""
    generator = torch.Generator().manual_seed(seed)
    tied = getattr(model, "get_input_embeddings", None)  # transformers' models; lmtrain's tie these (all do here)
    embedding = tied().weight if tied is not None else model.output_weight
    with torch.no_grad():
        for p in model.parameters():
            if p is not embedding:
                p.add_(0.02 * torch.randn(p.shape, generator=generator))
    return model.eval()


def _logits_agree(ours, hf, idx: torch.Tensor, start: int) -> float:
    """Max |logit difference| over `idx` placed at positions start.. (a packed row of one sequence)."""
    T = idx.size(1)
    positions = torch.arange(start, start + T).expand(idx.size(0), T)
    with torch.no_grad():
        if start == 0:
            got, _ = ours(idx)
            expected = hf(idx).logits
        else:
            causal = torch.ones(T, T, dtype=torch.bool).tril().expand(idx.size(0), 1, T, T)
            got = ours.logits(ours.hidden(idx, packing=Packing(positions, causal)))
            expected = hf(idx, position_ids=positions).logits
    return (got - expected).abs().max().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_released_configs_give_the_same_logits_both_ways(name: str) -> None:
    config = released(name)
    adapter = adapter_for(config)
    cfg = adapter.from_hf_config(config)
    torch.manual_seed(0)
    hf = _perturbed(_hf(config), seed=0)  # its init is random already; biases and norms are not
    assert type(hf).__name__ == MODELS[name]
    with torch.device("meta"):
        ours = build_model(cfg)
    ours = ours.to_empty(device="cpu").eval()
    ours.load_state_dict(adapter.from_hf_state_dict(hf.state_dict(), cfg), strict=True)
    idx = torch.randint(0, cfg.vocab_size, (2, 24))
    starts = (0, cfg.max_seq_len - 24)  # the start and the end of the context the model supports
    for start in starts:
        assert _logits_agree(ours, hf, idx, start) < 1e-4, (name, start)
    _perturbed(ours, seed=1)  # new weights, the other way
    hf.load_state_dict(adapter.to_hf_state_dict(ours.state_dict(), cfg, include_head=True), strict=True)
    for start in starts:
        assert _logits_agree(ours, hf, idx, start) < 1e-4, (name, start)
    exported = adapter.to_hf_config(cfg)
    assert exported["architectures"] == [MODELS[name]]
    assert adapter.from_hf_config(exported) == cfg  # nothing lost on the way back


@pytest.mark.parametrize("name", ["SmolLM2-135M", "Qwen3-0.6B", "Llama-3.2-1B"])
def test_rotary_frequencies_equal_transformers(name: str) -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = released(name)
    cfg = adapter_for(config).from_hf_config(config)
    hf_cfg = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    kind = hf_cfg.rope_parameters["rope_type"]
    if kind == "default":
        expected = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_size, 2).float() / cfg.head_size)
    else:
        expected, _ = ROPE_INIT_FUNCTIONS[kind](hf_cfg, torch.device("cpu"))
    torch.testing.assert_close(inv_frequencies(cfg), expected.float(), rtol=1e-6, atol=0)
    if name == "Llama-3.2-1B":  # the scaling changes the low frequencies and keeps the high ones
        plain = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_size, 2).float() / cfg.head_size)
        assert torch.equal(inv_frequencies(cfg)[:4], plain[:4]) and inv_frequencies(cfg)[-1] < plain[-1] / 30


def test_the_released_shapes_are_read_as_released() -> None:
    qwen3 = adapter_for(released("Qwen3-0.6B")).from_hf_config(released("Qwen3-0.6B"))
    assert (qwen3.head_size, qwen3.attn_width, qwen3.d_model, qwen3.qk_norm) == (128, 2048, 1024, True)
    qwen2 = adapter_for(released("Qwen2.5-0.5B")).from_hf_config(released("Qwen2.5-0.5B"))
    assert qwen2.qkv_bias and not qwen2.qk_norm and qwen2.kv_heads == 2 and qwen2.max_seq_len == 32768
    llama = adapter_for(released("Llama-3.2-1B")).from_hf_config(released("Llama-3.2-1B"))
    assert (llama.rope_scaling, llama.rope_factor, llama.rope_original_max_seq_len) == ("llama3", 32.0, 8192)
