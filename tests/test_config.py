"""Configs and presets: exact sizes, validation messages, overrides, the presets command."""

from __future__ import annotations

import json

import pytest

from lmtrain.cli import main
from lmtrain.config import build_run_config
from lmtrain.defaults import PRESET_LR
from lmtrain.errors import ConfigError
from lmtrain.model.config import GPTConfig
from lmtrain.model.sizing import describe, flops_per_token, param_counts
from lmtrain.presets import PRESETS, apply_overrides, ff_warning, get_preset

EXPECTED_PARAMS = {"tiny": 16_090_880, "small": 44_909_056, "base": 124_439_808}


@pytest.mark.parametrize("name,params", EXPECTED_PARAMS.items())
def test_preset_parameter_counts_match_the_contract(name: str, params: int) -> None:
    assert param_counts(get_preset(name))["total"] == params


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_with_the_counted_parameters(name: str) -> None:
    import torch

    from lmtrain.model.gpt import GPT

    cfg = get_preset(name)
    with torch.device("meta"):
        model = GPT(cfg)
    assert sum(p.numel() for p in model.parameters()) == param_counts(cfg)["total"]
    assert cfg.d_ff == 4 * cfg.d_model


def test_preset_shapes_match_the_table() -> None:
    shapes = {n: (c.d_model, c.n_head, c.n_layer, c.d_ff, c.max_seq_len, c.vocab_size) for n, c in PRESETS.items()}
    assert shapes["tiny"] == (256, 4, 4, 1024, 256, 50257)
    assert shapes["small"] == (512, 8, 6, 2048, 512, 50257)
    assert shapes["base"] == (768, 12, 12, 3072, 1024, 50257)


def test_flops_per_token_formula() -> None:
    cfg = get_preset("tiny")
    n = 16_090_880 - 256 * 256  # less the position embedding
    assert flops_per_token(cfg) == 6 * n + 12 * 4 * 256 * 256
    assert flops_per_token(cfg, seq_len=128) == 6 * n + 12 * 4 * 256 * 128


def test_non_embedding_params_exclude_both_embeddings() -> None:
    cfg = get_preset("small")
    counts = param_counts(cfg)
    assert counts["non_embedding"] == counts["total"] - 50257 * 512 - 512 * 512


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"d_model": 500, "n_head": 8}, "d_model"),
        ({"n_layer": 0}, "n_layer"),
        ({"n_head": -1}, "n_head"),
        ({"d_ff": 0}, "d_ff"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"max_seq_len": 0}, "max_seq_len"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"n_layer": True}, "n_layer"),
    ],
)
def test_invalid_config_is_a_one_line_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        GPTConfig(**kwargs)
    message = str(info.value)
    assert f"{field}=" in message and "\n" not in message


def test_d_ff_follows_d_model_unless_given() -> None:
    small = get_preset("small")
    assert apply_overrides(small, {"d_model": "384"}).d_ff == 4 * 384
    assert apply_overrides(small, {"d_model": "384", "d_ff": "1000"}).d_ff == 1000
    assert apply_overrides(small, {"n_layer": "3"}) == GPTConfig(
        n_layer=3, n_head=8, d_model=512, d_ff=2048, max_seq_len=512
    )


def test_overrides_reject_unknown_keys_and_bad_types() -> None:
    with pytest.raises(ConfigError, match="unknown key 'width'"):
        apply_overrides(get_preset("tiny"), {"width": 3})
    with pytest.raises(ConfigError, match="n_layer='four' is not an integer"):
        apply_overrides(get_preset("tiny"), {"n_layer": "four"})


def test_ff_ratio_warning() -> None:
    assert ff_warning(get_preset("small")) is None
    warning = ff_warning(apply_overrides(get_preset("small"), {"d_ff": 1024}))
    assert warning is not None and "2 x d_model" in warning


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny, small, base"):
        get_preset("huge")


def test_presets_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(EXPECTED_PARAMS) <= set(data)
    for name, params in EXPECTED_PARAMS.items():
        assert data[name]["params"] == params
        assert data[name]["non_embedding_params"] == param_counts(get_preset(name))["non_embedding"]
        assert data[name]["flops_per_token"] == flops_per_token(get_preset(name))
    assert data["tiny"] == describe(get_preset("tiny")) | {"lr": PRESET_LR["tiny"]}


def test_presets_table_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "16,090,880" in out and "124,439,808" in out


def test_presets_with_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "small", "--d-model", "384", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["small"] and data["small"]["d_ff"] == 1536


def test_invalid_override_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "small", "--n-head", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "d_model=512 must be a multiple of n_head=7" in err
    assert "Traceback" not in err


def test_a_run_without_lr_warmup_or_optimizer_flags_gets_defaults_that_suit_it() -> None:
    from lmtrain.train.schedule import run_schedule

    cfg = build_run_config({"preset": "tiny", "max_steps": 120})
    tc = cfg.train
    oc = tc.optimizer
    assert (oc.name, oc.lr, oc.peak_muon_lr) == ("muon", PRESET_LR["tiny"], 3 * PRESET_LR["tiny"])
    assert tc.schedule.warmup is None and run_schedule(tc, 120).warmup == 6  # 5% of the run
    assert tc.schedule.warmup_steps(100_000) == 1000 and tc.schedule.warmup_steps(3) == 1  # at most 1000, at least 1
    assert build_run_config({"preset": "base"}).train.optimizer.lr == PRESET_LR["base"]
    assert build_run_config({"preset": "tiny", "lr": 1e-3, "warmup": 0}).train.schedule.warmup_steps(120) == 0
    assert set(PRESET_LR) == set(PRESETS)
