"""GGUF exports checked by llama.cpp itself (through llama-cpp-python) and read back by lmtrain and transformers: for
each variant, token ids equal to llama.cpp's, per-position logits of the f32 export within 1e-3 over 256 tokens,
32 greedy tokens identical, and the import equal to the model exported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLE
from gguf_helpers import need, variant_export, variant_run
from lmtrain.bench.gguf_variants import TEXTS, VARIANTS
from lmtrain.bench.llama_cpp import greedy, llama, logits, tokens, with_llama_cpp_gelu
from lmtrain.eval.generate import generate
from lmtrain.interop.open import open_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gguf")]  # one worker trains and exports each variant once


def _opened(run: Path):
    opened = open_model(run)
    return opened, opened.model("cpu"), opened.tokenizer([SAMPLE.parent / "gpt2"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_llama_cpp_tokenizes_computes_and_decodes_as_lmtrain(
    variant: str, tmp_path_factory: pytest.TempPathFactory, measured_peak: str
) -> None:
    need("llama_cpp")
    run = variant_run(variant, tmp_path_factory, measured_peak)
    path = variant_export(variant, tmp_path_factory, measured_peak)
    opened, model, tok = _opened(run)
    from lmtrain.gguf_file import read_gguf

    assert read_gguf(path).require("general.architecture") == VARIANTS[variant][1]
    ids = tok.encode((SAMPLE / "wiki.valid.raw").read_text())[:256]
    with llama(path, n_ctx=320) as ref:
        for text in TEXTS:
            assert tokens(ref, text) == tok.encode(text), text
            assert tokens(ref, text, special=True) == tok.encode_rendered(text), text
        theirs = logits(ref, ids)
        with torch.no_grad():
            exact = model(torch.tensor([ids]))[0][0].numpy()
            ours = with_llama_cpp_gelu(model)(torch.tensor([ids]))[0][0].numpy()
        assert theirs.shape == ours.shape == (256, opened.config.vocab_size)
        assert float(np.abs(ours - theirs).max()) < 1e-3
        assert float(np.abs(exact - theirs).max()) < (1e-2 if variant == "gpt2" else 1e-3)  # gpt2: GELU in fp16
        assert float(np.abs(ours).max()) > 1.0  # trained logits, not a uniform start
        prompt = ids[:16]
        expected = generate(model, torch.tensor([prompt]), 32, temperature=0)[0].tolist()
        assert greedy(ref, prompt, 32) == expected
        stop = expected[len(prompt) + 5]  # a reply ends after the first stop id it decodes
        assert greedy(ref, prompt, 32, stop_ids={stop}) == expected[: expected.index(stop, len(prompt)) + 1]


@pytest.mark.parametrize("variant", ["gpt2", "modern-swiglu", "qkv-bias", "llama3-scaling", "padded-vocab"])
def test_an_f32_export_imports_back_as_the_same_model(
    variant: str, tmp_path_factory: pytest.TempPathFactory, measured_peak: str
) -> None:
    run = variant_run(variant, tmp_path_factory, measured_peak)
    back = open_model(variant_export(variant, tmp_path_factory, measured_peak))
    source = open_model(run)
    fields = ("d_model", "n_layer", "n_head", "d_ff", "vocab_size", "max_seq_len", "kv_heads", "head_size")
    assert {f: getattr(back.config, f) for f in fields} == {f: getattr(source.config, f) for f in fields}
    exported = back.model("cpu")
    ids = torch.randint(0, source.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(ids)[0], source.model("cpu")(ids)[0], rtol=0, atol=1e-5)
    assert back.provenance.format == "gguf" and back.checkpoint["preset"] == "gguf-import"
    assert back.tokenizer([]).encode(TEXTS[2]) == source.tokenizer([SAMPLE.parent / "gpt2"]).encode(TEXTS[2])


@pytest.mark.parametrize("variant", ["gpt2", "swiglu-gqa-head-dim", "qkv-bias"])
def test_transformers_reads_the_export_back(
    variant: str, tmp_path_factory: pytest.TempPathFactory, measured_peak: str
) -> None:
    need("accelerate")
    transformers = pytest.importorskip("transformers")
    path = variant_export(variant, tmp_path_factory, measured_peak)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    _, model, _ = _opened(variant_run(variant, tmp_path_factory, measured_peak))
    ids = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(ids).logits, model(ids)[0], rtol=0, atol=1e-4)


def test_llama_cpps_perplexity_over_the_eval_windows_equals_lmtrain_eval(
    tmp_path_factory: pytest.TempPathFactory, measured_peak: str
) -> None:
    """How bench/smollm2.py scores llama.cpp: over `lmtrain eval --windows`' windows (`window_nll`) and over every
    window of a stream after its leading end-of-text, as `lmtrain eval` cuts a whole split (`stream_nll`), an f32
    export's perplexity equals lmtrain's on the same windows."""
    import json

    from gguf_helpers import cli
    from lmtrain.bench.llama_cpp import stream_nll, window_nll
    from lmtrain.eval.perplexity import score_tokens

    need("llama_cpp")
    run = variant_run("modern-swiglu", tmp_path_factory, measured_peak)
    path = variant_export("modern-swiglu", tmp_path_factory, measured_peak)
    _, model, tok = _opened(run)
    code, out, err = cli("eval", str(run), "--split", "valid", "--context", "64", "--windows", "3", "--json")
    assert code == 0, err
    some = json.loads(out)
    stream = np.asarray(tok.encode((SAMPLE / "wiki.valid.raw").read_text())[:700])  # 700: a partial last window
    ours = score_tokens(model, stream, context=256, stride=256, batch_size=4, eot_id=tok.eot_id)
    with llama(path, n_ctx=256) as ref:
        nll, count = window_nll(ref, [stream[i * 64 : i * 64 + 65].tolist() for i in range(3)])
        assert count == some["tokens"] == 3 * 64
        assert nll / count == pytest.approx(some["nll_per_token"], rel=1e-5)
        nll, count = stream_nll(ref, stream, context=256, bos_id=tok.eot_id)
    assert count == ours.tokens == 700
    assert nll / count == pytest.approx(ours.nll / ours.tokens, rel=1e-5)
