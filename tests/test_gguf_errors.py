"""Bad input to GGUF export and import: one line, exit 2, nothing written and nothing overwritten, for a truncated
file, a file that is not GGUF, an architecture or pre-tokenizer lmtrain does not know, a tensor type the gguf package
cannot dequantize, a model llama.cpp cannot compute, a --dtype not in the list, an existing file without --force, and
--init-from FILE.gguf with --resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import randomised
from gguf_helpers import cli
from lmtrain.checkpoint import model_state, write_checkpoint
from lmtrain.data.tokenizers.gpt2 import gpt2_fingerprint
from lmtrain.model.config import GPTConfig, ModernConfig
from lmtrain.model.registry import build_model, model_to_dict

SWIGLU = ModernConfig(vocab_size=50257, n_layer=1, n_head=2, d_model=64, d_ff=96, max_seq_len=64, mlp="swiglu")


def checkpoint(folder: Path, cfg=SWIGLU) -> Path:
    """A checkpoint of `cfg` with random weights and the GPT-2 BPE (what every export needs, without training)."""
    model = randomised(build_model(cfg), scale=0.02)
    return write_checkpoint(folder, model_state(model), {"model": model_to_dict(cfg), "tokenizer": gpt2_fingerprint()})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    out = folder / "model.gguf"
    code, _, err = cli("export", str(checkpoint(folder / "ckpt")), "--format", "gguf", "--out", str(out))
    assert code == 0, err
    return out


def fails(*args: str, says: str) -> str:
    code, _, err = cli(*args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmtrain: error: ") and says in lines[0], err
    return lines[0]


def export_refused(cfg, folder: Path, says: str) -> None:
    """Exporting a checkpoint of `cfg` to GGUF fails with `says`, and no file (not even a temporary one) is left."""
    fails(
        "export", str(checkpoint(folder / "ckpt", cfg)), "--format", "gguf", "--out", str(folder / "m.gguf"), says=says
    )
    assert not (folder / "m.gguf").exists() and list(folder.glob(".m.gguf*")) == []


def replaced(src: Path, dest: Path, old: bytes, new: bytes) -> Path:
    """A copy of `src` with the first `old` (a GGUF string with its length) replaced by `new` of the same length."""
    data = src.read_bytes()
    key = len(old).to_bytes(8, "little") + old
    assert len(old) == len(new) and key in data
    dest.write_bytes(data.replace(key, len(new).to_bytes(8, "little") + new, 1))
    return dest


def test_broken_and_foreign_files_are_refused_before_anything_is_written(exported: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    for command in (("eval", str(truncated)), ("import", str(truncated), "--out", str(tmp_path / "a"))):
        fails(*command, says="truncated")
    header = tmp_path / "header.gguf"
    header.write_bytes(exported.read_bytes()[:100])
    fails("generate", str(header), says="truncated or damaged GGUF file")
    other = tmp_path / "weights.gguf"
    other.write_bytes(b"PK\x03\x04 not a gguf file at all")
    fails("import", str(other), "--out", str(tmp_path / "b"), says="is a file but not a GGUF file")
    mamba = replaced(exported, tmp_path / "mamba.gguf", b"qwen3", b"mamba")
    fails("import", str(mamba), "--out", str(tmp_path / "c"), says="holds a 'mamba' model; lmtrain computes")
    pre = replaced(exported, tmp_path / "pre.gguf", b"gpt-2", b"gpt-9")
    fails("import", str(pre), "--out", str(tmp_path / "d"), says="unknown pre-tokenizer 'gpt-9'")
    fails("train", "--init-from", str(pre), "--out", str(tmp_path / "e"), says="unknown pre-tokenizer 'gpt-9'")
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_a_tensor_type_the_gguf_package_cannot_dequantize_is_refused(exported: Path, tmp_path: Path) -> None:
    from lmtrain.gguf_file import read_gguf

    record = read_gguf(exported).tensors["output_norm.weight"]
    data = bytearray(exported.read_bytes())
    info = data.index(b"output_norm.weight") + len(b"output_norm.weight")  # name, n_dims, dims, type
    n_dims = int.from_bytes(data[info : info + 4], "little")
    at = info + 4 + 8 * n_dims
    assert int.from_bytes(data[at : at + 4], "little") == record.ggml_type == 0  # F32
    data[at : at + 4] = (15).to_bytes(4, "little")  # Q8_K: 256-value blocks the gguf package only quantizes to
    (tmp_path / "q8k.gguf").write_bytes(bytes(data))
    fails("import", str(tmp_path / "q8k.gguf"), "--out", str(tmp_path / "x"), says="Q8_K, which the gguf package")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"mlp": "relu2", "d_ff": 128}, "--mlp relu2: llama.cpp's qwen3 graph"),
        ({"mlp": "gelu", "d_ff": 128}, "--mlp gelu"),
        ({"logit_softcap": 30.0}, "--logit-softcap 30"),
        ({"rope_scaling": "llama3", "rope_factor": 8.0}, "--rope-scaling llama3 with QK-norm"),
        ({"qk_norm": False, "qkv_bias": True, "rope_scaling": "llama3", "rope_factor": 8.0}, "with q/k/v biases"),
    ],
)
def test_what_no_llama_cpp_graph_computes_is_refused(change: dict, says: str, tmp_path: Path) -> None:
    export_refused(dataclasses.replace(SWIGLU, **change), tmp_path, says)


def test_gpt2_without_biases_is_refused(tmp_path: Path) -> None:
    cfg = GPTConfig(vocab_size=50257, n_layer=1, n_head=2, d_model=64, d_ff=256, max_seq_len=64, bias=False)
    export_refused(cfg, tmp_path, "--no-bias")


def test_dtype_force_and_resume_mistakes(exported: Path, tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "ckpt")
    out = tmp_path / "m.gguf"
    code, _, err = cli("export", str(ckpt), "--format", "gguf", "--out", str(out), "--dtype", "q4_k")
    assert code == 2 and "invalid choice: 'q4_k'" in err and not out.exists()
    out.write_bytes(b"a file the user keeps")
    fails("export", str(ckpt), "--format", "gguf", "--out", str(out), says="exists; give another path, or --force")
    assert out.read_bytes() == b"a file the user keeps"
    fails(
        "export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hf"), "--force", says="apply to --format gguf"
    )
    code, _, err = cli("export", str(ckpt), "--format", "gguf", "--out", str(out), "--force", "--dtype", "q8_0")
    assert code == 0, err
    assert out.read_bytes()[:4] == b"GGUF"
    fails("train", "--init-from", str(exported), "--resume", str(tmp_path / "run"), says="--resume")


def test_q8_0_keeps_in_f16_the_matrices_its_blocks_do_not_divide(tmp_path: Path) -> None:
    """Rows of 48 values (d_model 48) are not a whole number of q8_0's 32-value blocks: those matrices stay f16 and
    the export says so; the rest is q8_0, and the file reads back within q8_0's rounding."""
    from lmtrain.gguf_file import read_gguf
    from lmtrain.interop.open import open_model

    cfg = dataclasses.replace(SWIGLU, d_model=48, d_ff=64, n_head=2)
    ckpt = checkpoint(tmp_path / "ckpt", cfg)
    out = tmp_path / "m.gguf"
    code, _, err = cli("export", str(ckpt), "--format", "gguf", "--out", str(out), "--dtype", "q8_0")
    assert code == 0, err
    types = {name: r.ggml_type for name, r in read_gguf(out).tensors.items()}
    assert types["blk.0.ffn_down.weight"] == 8  # Q8_0: rows of 64
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == 1  # F16: rows of 48
    assert types["blk.0.attn_norm.weight"] == 0  # vectors stay F32
    assert "kept 7 matrices in f16" in err and "blk.0.attn_q.weight" in err
    back, source = open_model(out).weights, open_model(ckpt).weights
    assert all(np.allclose(back[k].numpy(), source[k].numpy(), atol=2e-3) for k in source)


def test_the_default_model_is_refused_with_the_flag_that_makes_it_exportable(tmp_path: Path) -> None:
    """lmtrain's default block computes a ReLU² MLP, which no llama.cpp graph does (bench/mlp_race.sh kept it: SwiGLU
    cost more than 0.02 nats); the refusal names the way out."""
    from lmtrain.presets import get_preset

    cfg = get_preset("micro")  # what `lmtrain train --preset micro` builds
    assert (cfg.arch, cfg.mlp, cfg.qk_norm) == ("modern", "relu2", True)
    export_refused(cfg, tmp_path, "train with --mlp swiglu to export to GGUF")
