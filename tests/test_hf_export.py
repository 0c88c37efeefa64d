"""Export to and import from transformers folders (GPT-2, Qwen3): same logits, same greedy text, round trip; every
command in process through `main`, each exported folder built once per module."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from lmtrain.checkpoint import load_model, load_weights, resolve_checkpoint
from lmtrain.cli import main
from lmtrain.eval.generate import generate

pytestmark = [
    pytest.mark.slow,  # every test here trains a model (the session's trained runs) or exports one
    pytest.mark.xdist_group("hf-export"),  # one worker builds the module's exported folders once
]

transformers = pytest.importorskip("transformers")


@dataclasses.dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str) -> Result:
    """`lmtrain ARGS` in this process: its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    proc = _run("export", str(trained_run), "--format", "hf", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_transformers_loads_the_export_with_the_same_logits_and_greedy_text(trained_run: Path, exported: Path) -> None:
    ours, _ = load_model(resolve_checkpoint(trained_run, "best"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(exported).eval()
    idx = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)
    prompt = idx[:1, :8]
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=50256)
    got = generate(ours, prompt, 20, temperature=0)
    assert torch.equal(got, expected)


def test_the_export_carries_the_gpt2_tokenizer(exported: Path, tokenizer) -> None:
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json"} <= {
        p.name for p in exported.iterdir()
    }
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
    text = " = Valkyria Chronicles III = \n Senjō no Valkyria 3 : <unk> Chronicles"
    assert hf_tok(text)["input_ids"] == tokenizer.encode(text)
    assert json.loads((exported / "config.json").read_text())["n_inner"] == 256


def test_import_round_trip(trained_run: Path, exported: Path, tmp_path: Path, sample_dir: Path) -> None:
    out = tmp_path / "imported"
    proc = _run("import-hf", str(exported), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    original = load_weights(resolve_checkpoint(trained_run, "best"))
    imported = load_weights(out)
    assert set(imported) == set(original)
    for name, value in original.items():
        torch.testing.assert_close(imported[name], value, rtol=0, atol=0)
    result = _run("eval", str(out), "--data-dir", str(sample_dir), "--split", "valid", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tokens"] == 10_819


def test_import_of_a_transformers_save_pretrained_folder(tmp_path: Path) -> None:
    from lmtrain.interop.open import import_model

    cfg = transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    model, config = load_model(import_model(tmp_path / "hf", tmp_path / "ckpt"))
    assert model.config.d_ff == 4 * 48 and config["preset"] == "hf-import" and "tokenizer" not in config
    idx = torch.randint(0, 300, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_import_and_export_errors(tmp_path: Path, trained_run: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = _run("import-hf", str(tmp_path / "empty"), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "has no config.json" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    proc = _run("import-hf", str(tmp_path / "bert"), "--out", str(tmp_path / "y"))
    assert proc.returncode == 2 and "lmtrain reads gpt2, llama, qwen2, qwen3" in proc.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    proc = _run("export", str(trained_run), "--out", str(tmp_path / "taken"))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_into_an_empty_folder_and_a_failed_export_leaves_it(trained_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run("export", str(tmp_path / "no-checkpoint"), "--out", str(empty))
    assert proc.returncode == 2 and empty.is_dir() and not any(empty.iterdir())
    proc = _run("export", str(trained_run), "--out", str(empty))
    assert proc.returncode == 0, proc.stderr
    assert (empty / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def exported_modern(trained_modern_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf-modern"
    proc = _run("export", str(trained_modern_run), "--format", "hf", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_modern_block_exports_as_qwen3_and_loads_with_the_auto_classes(
    trained_modern_run: Path, exported_modern: Path, tokenizer
) -> None:
    ours, _ = load_model(resolve_checkpoint(trained_modern_run, "best"))
    config = json.loads((exported_modern / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["num_key_value_heads"] == 1
    assert config["vocab_size"] == 50257 and ours.output_weight.shape[0] == 50304  # the padding is dropped
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported_modern).eval()
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    idx = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)
    prompt = idx[:1, :8]
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=50256)
    assert torch.equal(generate(ours, prompt, 20, temperature=0), expected)
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported_modern)
    text = " = Valkyria Chronicles III = \n Senjō no Valkyria 3"
    assert hf_tok(text)["input_ids"] == tokenizer.encode(text)


def test_a_modern_export_imports_back_to_the_same_logits(exported_modern: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported"
    proc = _run("import-hf", str(exported_modern), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    model, config = load_model(out)
    assert config["model"]["arch"] == "modern" and model.config.n_kv_head == 1 and not model.config.tie
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported_modern).eval()
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_a_model_no_transformers_class_computes_is_refused_with_exit_2(tmp_path: Path) -> None:
    from lmtrain.checkpoint import write_checkpoint
    from lmtrain.model.config import ModernConfig
    from lmtrain.model.registry import build_model, model_to_dict

    cfg = ModernConfig(vocab_size=300, n_layer=1, n_head=2, d_model=16, d_ff=64, max_seq_len=16, logit_softcap=15.0)
    ckpt = write_checkpoint(tmp_path / "ckpt", build_model(cfg).state_dict(), {"model": model_to_dict(cfg)})
    proc = _run("export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--logit-softcap 15: no transformers class" in proc.stderr
    assert not (tmp_path / "hf").exists()
