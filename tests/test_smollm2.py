"""The released SmolLM2-135M-Instruct (Q4_1 GGUF) through lmtrain: imported with the weights transformers' own GGUF
loader dequantizes, tokenized as llama.cpp tokenizes it, answering through its chat template, continued with
`train --init-from` from the loss `lmtrain eval --windows` gives it, and exported back to a GGUF llama.cpp runs.
Trained weights, not random ones: every number here is the released model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLE, read_jsonl
from gguf_helpers import cli, need, smollm2_file
from lmtrain.bench.gguf_variants import TEXTS
from lmtrain.bench.llama_cpp import llama, tokens, window_nll
from lmtrain.interop.open import open_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]  # one worker holds the 135M model


@pytest.fixture(scope="module")
def smollm2():
    return open_model(smollm2_file())


def test_the_release_imports_as_the_llama_shape_it_is_and_tokenizes_as_llama_cpp(smollm2, tmp_path: Path) -> None:
    cfg = smollm2.config
    assert (cfg.arch, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.kv_heads, cfg.vocab_size) == (
        "modern",
        30,
        576,
        9,
        3,
        49152,
    )
    assert (cfg.mlp, cfg.qk_norm, cfg.tie, cfg.rope_theta, cfg.max_seq_len) == ("swiglu", False, True, 100000.0, 8192)
    tok = smollm2.tokenizer([])
    # documents end with <|endoftext|> as in pretraining; turns with <|im_end|>, the file's eos; generation stops at both
    assert (tok.eot_id, tok.eos_id, tok.bos_id, tok.stop_ids) == (0, 2, 1, frozenset({0, 2}))
    assert tok.chat_template is not None and "<|im_start|>" in tok.chat_template
    need("llama_cpp")
    docs = (Path(__file__).parents[1] / "src/lmtrain/assets/sample/wiki.valid.raw").read_text().split("\n = ")
    with llama(smollm2_file(), vocab_only=True) as ref:
        for text in [*TEXTS, *docs]:
            assert tokens(ref, text) == tok.encode(text)
            assert tokens(ref, text, special=True) == tok.encode_rendered(text)
    out = tmp_path / "ckpt"
    code, _, err = cli("import", str(smollm2_file()), "--out", str(out))
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["source"]["format"] == "gguf" and config["source"]["hf_config"]["model_type"] == "llama"
    assert config["source"]["name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    again = open_model(out)
    assert all(torch.equal(again.weights[k], smollm2.weights[k]) for k in smollm2.weights)
    assert again.tokenizer([]).encode(TEXTS[1]) == tok.encode(TEXTS[1])


def test_the_dequantized_weights_are_what_transformers_gguf_loader_reads(smollm2) -> None:
    need("accelerate")
    transformers = pytest.importorskip("transformers")
    from lmtrain.model.hf_llama import to_hf_state_dict

    path = smollm2_file()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ours = to_hf_state_dict(smollm2.weights, smollm2.config, include_head=True)
    theirs = hf.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # Q4_1 and Q8_0 blocks, llama's permutation undone


def test_the_release_scores_as_llama_cpp_scores_its_quantized_self_and_answers_in_chat(smollm2) -> None:
    """llama.cpp multiplies Q4_1 blocks by activations it rounds to 8 bits; lmtrain the dequantized weights in fp32:
    per-token loss within 1% on the first 4 windows of 128 sample tokens."""
    need("llama_cpp")
    tok = smollm2.tokenizer([])
    ids = tok.encode((SAMPLE / "wiki.valid.raw").read_text())
    windows = [ids[i * 128 : i * 128 + 129] for i in range(4)]
    model = smollm2.model("cpu")
    ours = 0.0
    with torch.no_grad():
        for w in windows:
            logp = torch.log_softmax(model(torch.tensor([w[:-1]]))[0][0].double(), dim=-1)
            ours -= float(logp[torch.arange(128), torch.tensor(w[1:])].sum())
    with llama(smollm2_file(), n_ctx=256, threads=2) as ref:
        theirs, count = window_nll(ref, windows)
    assert count == 512 and ours / count < 4.0  # far below ln(49152) = 10.8: a trained model
    assert abs(ours - theirs) / theirs < 0.01
    code, out, err = cli(
        "generate",
        str(smollm2_file()),
        "--chat",
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        "--json",
    )
    assert code == 0, err
    reply = json.loads(out)[0]
    assert "Paris" in reply["completion"] and reply["stop"] == "end of turn"


def test_init_from_the_gguf_starts_where_eval_says_and_exports_back_to_llama_cpp(tmp_path: Path) -> None:
    model = str(smollm2_file())
    data = ("--dataset", "wikitext-103", "--data-dir", str(SAMPLE))
    code, out, err = cli("eval", model, *data, "--split", "valid", "--context", "64", "--windows", "4", "--json")
    assert code == 0, err
    start = json.loads(out)["nll_per_token"]
    run = tmp_path / "run"
    args = ("--batch-size", "2", "--seq-len", "64", "--eval-windows", "4", "--eval-every", "2", "--max-steps", "2")
    code, _, err = cli("train", "--init-from", model, *data, *args, "--sample-tokens", "0", "--out", str(run))
    assert code == 0, err
    evals = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "eval"]
    assert evals[0]["step"] == 0 and evals[0]["val_loss"] == pytest.approx(start, abs=1e-4)
    assert start < 4.5 < np.log(49152)  # the released weights were loaded
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"]["format"] == "gguf" and config["data"]["tokenizer"] == str(smollm2_file().resolve())
    code, _, err = cli("train", "--init-from", model, "--resume", str(run))
    assert code == 2 and "--init-from" in err and "--resume" in err
    gguf = tmp_path / "continued.gguf"
    code, _, err = cli("export", str(run), "--format", "gguf", "--dtype", "q8_0", "--out", str(gguf))
    assert code == 0, err
    back = open_model(gguf)
    assert back.config.n_layer == 30 and back.tokenizer([]).chat_template == open_model(run).tokenizer([]).chat_template
    need("llama_cpp")
    tok = back.tokenizer([])
    with llama(gguf, vocab_only=True) as ref:
        assert tokens(ref, TEXTS[0]) == tok.encode(TEXTS[0])
