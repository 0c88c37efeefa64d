"""Configs and presets: exact sizes, validation messages, overrides, the presets command."""

from __future__ import annotations

import json

import pytest

from lmtrain.cli import main
from lmtrain.config import build_run_config
from lmtrain.defaults import MUON_LR_FACTOR, PRESET_LR, preset_lr
from lmtrain.errors import ConfigError
from lmtrain.model.config import GPTConfig
from lmtrain.model.sizing import describe, flops_per_token
from lmtrain.presets import SIZES, apply_overrides, ff_warning, get_preset, presets

EXPECTED_PARAMS = {"tiny": 16_090_880, "small": 44_909_056, "base": 124_439_808}
"""GPT-2's presets."""
MODERN_PARAMS = {"tiny": 16_014_336, "small": 44_613_376, "base": 123_552_768}
"""The modern block's: no position table, no biases, RMSNorm weights, QK-norm weights per head dimension."""
VARIANTS = [
    ("gpt2", {}),
    ("gpt2", {"bias": False, "pad_vocab_to": 64}),
    ("modern", {}),
    ("modern", {"mlp": "swiglu", "n_kv_head": 2, "tie": False, "pad_vocab_to": 128}),
    ("modern", {"mlp": "gelu", "qk_norm": False, "logit_softcap": 30.0}),
]


@pytest.mark.parametrize("name,params", EXPECTED_PARAMS.items())
def test_preset_parameter_counts_match_the_contract(name: str, params: int) -> None:
    assert get_preset(name, "gpt2").param_counts()["total"] == params
    assert get_preset(name).arch == "modern"  # the default architecture
    assert get_preset(name, "modern").param_counts()["total"] == MODERN_PARAMS[name]


def test_the_modern_tiny_preset_by_hand() -> None:
    d, v, layers = 256, 50257, 4
    per_block = 2 * d + 3 * d * d + d * d + 2 * (d // 4) + 2 * d * 4 * d  # norms, qkv, proj, qk-norm, relu2 MLP
    assert get_preset("tiny", "modern").param_counts()["total"] == v * d + layers * per_block + d


@pytest.mark.parametrize("arch", ["gpt2", "modern"])
@pytest.mark.parametrize("name", ["micro", "tiny", "small", "base"])
def test_every_preset_builds_with_the_counted_parameters(arch: str, name: str) -> None:
    import torch

    from lmtrain.model.registry import build_model

    for _, overrides in (v for v in VARIANTS if v[0] == arch):
        cfg = apply_overrides(get_preset(name, arch), overrides)
        with torch.device("meta"):
            model = build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) == cfg.param_counts()["total"], overrides
        roles = model.parameter_roles()
        assert len(roles.matrices) + len(roles.embeddings) + len(roles.vectors) == len(list(model.parameters()))
        assert ff_warning(cfg) is None


def test_preset_shapes_match_the_table() -> None:
    for arch in ("gpt2", "modern"):
        shapes = {
            n: (c.d_model, c.n_head, c.n_layer, c.d_ff, c.max_seq_len, c.vocab_size) for n, c in presets(arch).items()
        }
        assert shapes["tiny"] == (256, 4, 4, 1024, 256, 50257)
        assert shapes["small"] == (512, 8, 6, 2048, 512, 50257)
        assert shapes["base"] == (768, 12, 12, 3072, 1024, 50257)


def test_flops_per_token_formula() -> None:
    cfg = get_preset("tiny", "gpt2")
    n = 16_090_880 - 256 * 256  # less the position embedding
    assert flops_per_token(cfg) == 6 * n + 12 * 4 * 256 * 256
    assert flops_per_token(cfg, seq_len=128) == 6 * n + 12 * 4 * 256 * 128
    modern = get_preset("tiny", "modern")
    assert flops_per_token(modern) == 6 * 16_014_336 + 12 * 4 * 256 * 256  # the tied embedding is the head
    untied = apply_overrides(modern, {"tie": False})
    assert flops_per_token(untied) == flops_per_token(modern)  # the input embedding is only looked up


def test_padding_the_vocabulary_rounds_the_rows_up() -> None:
    cfg = apply_overrides(get_preset("tiny", "modern"), {"pad_vocab_to": 64})
    assert (cfg.vocab_size, cfg.padded_vocab) == (50257, 50304)
    assert cfg.param_counts()["total"] == MODERN_PARAMS["tiny"] + 47 * 256


def test_swiglu_gets_a_parameter_matched_width_unless_d_ff_is_given() -> None:
    tiny = get_preset("tiny", "modern")
    swiglu = apply_overrides(tiny, {"mlp": "swiglu"})
    assert swiglu.d_ff == 680 and abs(3 * 680 - 2 * 1024) <= 8  # three matrices of 680 ~ two of 1,024
    assert apply_overrides(tiny, {"mlp": "swiglu", "d_ff": 700}).d_ff == 700
    assert apply_overrides(tiny, {"d_model": 128}).d_ff == 512


def test_a_setting_of_another_architecture_is_refused() -> None:
    with pytest.raises(ConfigError, match="--mlp is a setting of --arch modern; this model is --arch gpt2"):
        apply_overrides(get_preset("tiny", "gpt2"), {"mlp": "swiglu"})
    with pytest.raises(ConfigError, match="--layer-norm-eps is a setting of --arch gpt2"):
        build_run_config({"arch": "modern", "layer_norm_eps": 1e-6})
    with pytest.raises(ConfigError, match="n_head=4 must be a multiple of n_kv_head=3"):
        apply_overrides(get_preset("tiny", "modern"), {"n_kv_head": 3})


def test_non_embedding_params_exclude_both_embeddings() -> None:
    cfg = get_preset("small", "gpt2")
    counts = cfg.param_counts()
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
    small = get_preset("small", "gpt2")
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
    assert main(["presets", "--json", "--arch", "gpt2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(EXPECTED_PARAMS) <= set(data)
    for name, params in EXPECTED_PARAMS.items():
        assert data[name]["params"] == params
        assert data[name]["non_embedding_params"] == get_preset(name, "gpt2").param_counts()["non_embedding"]
        assert data[name]["flops_per_token"] == flops_per_token(get_preset(name, "gpt2"))
    assert data["tiny"] == describe(get_preset("tiny", "gpt2")) | {"lr": PRESET_LR["gpt2"]["tiny"]}
    assert main(["presets", "--json", "--arch", "modern"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {name: data[name]["params"] for name in MODERN_PARAMS} == MODERN_PARAMS
    assert data["tiny"] == describe(get_preset("tiny", "modern")) | {"lr": PRESET_LR["modern"]["tiny"]}


def test_presets_table_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    for arch, expected in (("gpt2", "16,090,880"), ("modern", "16,014,336")):
        assert main(["presets", "--arch", arch]) == 0
        out = capsys.readouterr().out
        for name in presets(arch):
            assert any(line.startswith(name + " ") for line in out.splitlines())
        assert expected in out and f"--arch {arch}:" in out
        assert "train --init-from PATH (the model is PATH's, not a preset's): --optimizer adamw, --lr 0.0001" in out


def test_presets_with_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "small", "--d-model", "384", "--json", "--arch", "gpt2"]) == 0
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
    lr = PRESET_LR["modern"]["tiny"]
    assert cfg.model.arch == "modern" and (oc.name, oc.lr, oc.peak_muon_lr) == ("muon", lr, MUON_LR_FACTOR * lr)
    assert build_run_config({"preset": "tiny", "arch": "gpt2"}).train.optimizer.lr == PRESET_LR["gpt2"]["tiny"]
    assert tc.schedule.warmup is None and run_schedule(tc, 120).warmup == 6  # 5% of the run
    assert tc.schedule.warmup_steps(100_000) == 1000 and tc.schedule.warmup_steps(3) == 1  # at most 1000, at least 1
    assert build_run_config({"preset": "base"}).train.optimizer.lr == PRESET_LR["modern"]["base"]
    assert build_run_config({"preset": "tiny", "lr": 1e-3, "warmup": 0}).train.schedule.warmup_steps(120) == 0
    assert set(PRESET_LR) == {"gpt2", "modern"} and all(set(PRESET_LR[a]) == set(SIZES) for a in PRESET_LR)
    assert preset_lr("an-architecture-without-its-own-entry", "tiny") == PRESET_LR["modern"]["tiny"]


@pytest.mark.parametrize("arch", ["gpt2", "modern"])
def test_the_run_config_records_the_architecture_and_reads_it_back(arch: str) -> None:
    from lmtrain.config import run_config_from_dict

    cfg = build_run_config({"preset": "micro", "arch": arch})
    saved = json.loads(json.dumps(cfg.to_dict()))
    assert saved["model"]["arch"] == arch and run_config_from_dict(saved) == cfg
    del saved["model"]["arch"]  # a config.json written before the registry
    if arch == "gpt2":
        assert run_config_from_dict(saved).model == cfg.model
    else:
        with pytest.raises(ConfigError, match="unknown key 'mlp'"):
            run_config_from_dict(saved)


def test_a_resumed_run_keeps_its_architecture() -> None:
    from lmtrain.train.resume import resume_config

    saved = build_run_config({"preset": "micro", "arch": "gpt2"})
    assert resume_config(saved, {})[0].model.arch == "gpt2"  # the default changed; the run did not
    with pytest.raises(ConfigError, match="resuming with --arch modern, but the run was trained as --arch gpt2"):
        resume_config(saved, {"arch": "modern"})
    with pytest.raises(ConfigError, match="--mlp is a setting of --arch modern"):
        resume_config(saved, {"mlp": "swiglu"})
