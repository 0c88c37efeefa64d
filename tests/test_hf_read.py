"""Reading a transformers folder (`interop/hf/read.py`): the weights as the config implies them, sharded or not, the
tokenizer beside them; each bad folder is one line naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import randomised
from lmtrain.errors import CheckpointError, ConfigError
from lmtrain.interop.hf.read import read_hf_folder
from lmtrain.model.config import ModernConfig
from lmtrain.model.hf_llama import to_hf_config, to_hf_state_dict
from lmtrain.model.registry import build_model

CFG = ModernConfig(
    vocab_size=300,
    n_layer=2,
    n_head=4,
    n_kv_head=2,
    d_model=32,
    d_ff=64,
    head_dim=16,
    qkv_bias=True,
    qk_norm=False,
    mlp="swiglu",
    max_seq_len=32,
)


def _folder(path: Path, shards: int = 1) -> tuple[Path, dict[str, torch.Tensor]]:
    """A transformers Qwen2 folder of CFG with random weights, in `shards` safetensors files."""
    torch.manual_seed(0)
    ours = randomised(build_model(CFG), scale=0.1)
    state = to_hf_state_dict(ours.state_dict(), CFG)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(to_hf_config(CFG)))
    if shards == 1:
        save_file(state, str(path / "model.safetensors"))
    else:
        names = sorted(state)
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: state[k] for k in part}, str(path / file))
            weight_map |= {k: file for k in part}
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return path, ours.state_dict()


def test_a_sharded_folder_reads_as_the_single_file_one(tmp_path: Path) -> None:
    single, weights = _folder(tmp_path / "single")
    sharded, _ = _folder(tmp_path / "sharded", shards=3)
    a, b = read_hf_folder(single), read_hf_folder(sharded)
    assert a.config == b.config == CFG
    assert a.weights.keys() == b.weights.keys() == weights.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) and torch.equal(a.weights[k], weights[k]) for k in weights)
    assert len(b.provenance.weights_sha256) == 3 and list(a.provenance.weights_sha256) == ["model.safetensors"]


def test_bad_folders_are_one_line_naming_what_is_wrong(tmp_path: Path, gpt2_dir: Path) -> None:
    sharded, _ = _folder(tmp_path / "sharded", shards=2)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lacks model-00002-of-00002.safetensors, a shard"):
        read_hf_folder(sharded)
    bare, _ = _folder(tmp_path / "bare")
    (bare / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no weights"):
        read_hf_folder(bare)
    wrong, _ = _folder(tmp_path / "wrong")
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps(config | {"intermediate_size": 48}))
    with pytest.raises(CheckpointError, match=r"model.layers.0.mlp.gate_proj.weight has shape \(64, 32\), but "):
        read_hf_folder(wrong)
    (wrong / "config.json").write_text(json.dumps(config | {"model_type": "mamba"}))
    with pytest.raises(ConfigError, match="model_type='mamba'"):
        read_hf_folder(wrong)


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder, _ = _folder(tmp_path / "model")
    vocab = {f"t{i}": i for i in range(400)} | {"<|endoftext|>": 400}  # 401 ids for a 300-row embedding
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    with pytest.raises(ConfigError, match="has 401 ids but the model's embedding has 300 rows"):
        read_hf_folder(folder)
