"""The registry's adapters per format: each architecture's transformers and GGUF adapters load and provide every member
of their format's protocol; a module that lacks one is refused when it is loaded, naming what it lacks; and what has
no adapter of a format says so in one line."""

from __future__ import annotations

import dataclasses

import pytest

from lmtrain.errors import ConfigError
from lmtrain.model.interchange import Adapter, GGUFAdapter, HFAdapter
from lmtrain.model.registry import architectures, gguf_adapter, gguf_adapters, hf_adapter


def test_every_architecture_has_a_typed_adapter_per_format() -> None:
    for arch in architectures().values():
        assert isinstance(arch.hf, Adapter) and arch.hf.protocol is HFAdapter
        assert isinstance(arch.gguf, Adapter) and arch.gguf.protocol is GGUFAdapter
        assert hf_adapter(arch.name).MODEL_TYPES and gguf_adapter(arch.name).ARCHITECTURES
    names = [name for _, adapter in gguf_adapters() for name in adapter.ARCHITECTURES]
    assert sorted(names) == ["gpt2", "llama", "qwen2", "qwen3"]


def test_a_module_missing_a_member_of_its_protocol_is_refused() -> None:
    with pytest.raises(TypeError, match="lmtrain.model.hf_gpt2 lacks ARCHITECTURES, from_gguf, to_gguf of GGUFAdapter"):
        Adapter("lmtrain.model.hf_gpt2", GGUFAdapter).load()


def test_an_architecture_without_an_adapter_of_a_format_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmtrain.model import registry

    bare = {name: dataclasses.replace(arch, gguf=None) for name, arch in registry.ARCHITECTURES.items()}
    monkeypatch.setattr(registry, "ARCHITECTURES", bare)
    with pytest.raises(ConfigError, match="--arch gpt2 has no GGUF equivalent"):
        gguf_adapter("gpt2")
