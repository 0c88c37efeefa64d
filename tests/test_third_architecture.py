"""A third architecture registers as data plus one module: registered here (a toy decoder that shares fields with the
modern block), every command starts and documents its flags, `presets` lists it, `train` trains it and `eval` scores
it, without an edit anywhere else in lmtrain."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmtrain.cli import build_parser, main
from lmtrain.defaults import SIZE_LR
from lmtrain.fields import option
from lmtrain.model import registry
from lmtrain.model.base import CausalLM
from lmtrain.model.config import ModelConfig, counted
from lmtrain.model.kv_cache import KVCache
from test_help import subcommands


@dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    """A decoder of MLP blocks (no attention): fields of its own, and four it shares with the modern block."""

    arch: ClassVar[str] = "toy"
    dropout: float = option(0.0, "Dropout on the residual branches.")
    mlp: Literal["relu2", "gelu"] = option("gelu", "The toy's activation: relu2 or gelu (no swiglu).")
    tie: bool = option(True, "Tie the head to the embedding.")
    norm_eps: float = option(1e-5, "RMSNorm epsilon of the toy.")
    rope_theta: float = option(500.0, "Unused by the toy; shared with the modern block to test a shared flag.")
    mixer_width: int = option(16, "A field no other architecture has.")

    def param_counts(self) -> dict[str, int]:
        d, f = self.d_model, self.d_ff
        groups = {
            "token_embedding": self.padded_vocab * d,
            "output_head": 0 if self.tie else self.padded_vocab * d,
            "blocks": self.n_layer * (d + 2 * d * f),
            "final_norm": d,
        }
        return counted(groups, lookup=0 if self.tie else groups["token_embedding"])


class ToyBlock(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.kind = cfg.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.up(self.norm(x))  # (B, T, f)
        a = F.relu(a).square() if self.kind == "relu2" else F.gelu(a)
        return x + self.down(a)  # (B, T, C)


class Toy(CausalLM):
    """Token embedding, MLP blocks, final RMSNorm, tied or untied head."""

    def __init__(self, cfg: ToyConfig, loss_impl: str = "fused") -> None:
        super().__init__(cfg, loss_impl)
        self.embed = nn.Embedding(cfg.padded_vocab, cfg.d_model)
        self.layers = nn.ModuleList(ToyBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = None if cfg.tie else nn.Linear(cfg.d_model, cfg.padded_vocab, bias=False)
        nn.init.normal_(self.embed.weight, std=cfg.init_std)

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, packing=None) -> torch.Tensor:
        # position-wise blocks mix no tokens, so a packed row needs nothing of `packing`
        start = cache.length if cache is not None else 0
        self.check_length(start, idx.size(1))
        x = self.embed(idx)  # (B, T, C)
        for block in self.layers:
            x = block(x)
        if cache is not None:
            cache.advance(idx.size(1))
        return self.norm(x)  # (B, T, C)


TOY = registry.Architecture(
    name="toy", config=ToyConfig, module=f"{__name__}:Toy", summary="a toy decoder of MLP blocks (a test)"
)


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry with the toy architecture added (as a third entry of `ARCHITECTURES` would add it)."""
    monkeypatch.setattr(registry, "ARCHITECTURES", MappingProxyType({**registry.ARCHITECTURES, "toy": TOY}))


def test_every_command_starts_and_documents_the_new_flags(with_toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    commands = sorted(subcommands(build_parser()))
    assert len(commands) > 10
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0, command
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--mixer-width INT A field no other architecture has." in help_text
    assert "model overrides for --arch modern or toy" in help_text  # a shared key is one flag of both
    assert "--arch modern: Base of the rotary position frequencies.; --arch toy: Unused by the toy" in help_text
    assert "{relu2,swiglu,gelu}" in help_text  # the choices of both architectures' MLP


def test_presets_lists_the_new_architecture(with_toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "--arch", "toy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert list(rows) == ["micro", "tiny", "small", "base"]
    assert {name: row["lr"] for name, row in rows.items()} == dict(SIZE_LR)  # no entry of its own: the sizes' LRs
    assert (
        rows["micro"]["params"]
        == ToyConfig(n_layer=2, n_head=2, d_model=64, d_ff=256, max_seq_len=64).param_counts()["total"]
    )
    assert main(["presets", "--arch", "toy"]) == 0
    assert "--arch toy: a toy decoder of MLP blocks (a test)" in capsys.readouterr().out


def test_train_and_eval_run_the_new_architecture(with_toy: None, tmp_path: Path, capsys) -> None:
    out, cache = tmp_path / "run", os.environ["LMTRAIN_CACHE_DIR"]
    argv = ["train", "--arch", "toy", "--preset", "micro", "--d-model", "32", "--mixer-width", "8", "--mlp", "relu2"]
    argv += ["--norm-eps", "1e-4", "--dataset", "sample", "--max-steps", "2", "--batch-size", "2", "--seq-len", "32"]
    argv += ["--out", str(out), "--cache-dir", cache, "--doctor", "off", "--sample-tokens", "0"]
    argv += ["--eval-windows", "4", "--optimizer", "adamw", "--log", "jsonl"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())["model"]
    assert (saved["arch"], saved["mixer_width"], saved["mlp"], saved["norm_eps"]) == ("toy", 8, "relu2", 1e-4)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "step"] == [1, 2]
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "valid", "--json", "--cache-dir", cache]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
    assert main(["export", str(out), "--out", str(tmp_path / "hf")]) == 2
    assert "--arch toy has no transformers equivalent" in capsys.readouterr().err


def test_a_shared_flag_is_checked_by_the_architecture_it_is_given_to(with_toy: None, capsys) -> None:
    assert main(["presets", "micro", "--arch", "toy", "--mlp", "swiglu"]) == 2  # modern's choice, not the toy's
    assert "mlp='swiglu' is not valid; choose one of relu2, gelu" in capsys.readouterr().err
    assert main(["presets", "micro", "--arch", "gpt2", "--mixer-width", "8"]) == 2
    assert "--mixer-width is a setting of --arch toy; this model is --arch gpt2" in capsys.readouterr().err
