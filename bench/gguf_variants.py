"""Each GGUF variant (`lmtrain.bench.gguf_variants`) trained, exported and checked by llama.cpp, with the figures the
tests only bound: the GGUF architecture, the largest logit difference of the f32 export over 256 tokens, whether the
token ids (the texts and every sample article, plain and with special tokens) and 32 greedy tokens are equal, the
perplexity llama.cpp gives each of the f32, f16, bf16 and q8_0 exports on the sample's validation windows against
lmtrain's own, and transformers' read-back where its GGUF loader takes the architecture.

Usage: python bench/gguf_variants.py [OUT_JSON] [--work DIR] [--steps N]
(default bench/results/gguf-variants-cpu-2core.json). Needs llama-cpp-python (`make llama`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtrain.bench import provenance
from lmtrain.bench.gguf_variants import BASE, TEXTS, VARIANTS
from lmtrain.bench.llama_cpp import greedy, llama, logits, perplexity, tokens, window_nll, with_llama_cpp_gelu
from lmtrain.cli import main as lmtrain
from lmtrain.data.datasets import ASSETS
from lmtrain.eval.generate import generate
from lmtrain.interop.open import open_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = ASSETS / "sample"
DTYPES = ("f32", "f16", "bf16", "q8_0")
TRANSFORMERS_READS = ("gpt2", "swiglu-gqa-head-dim", "qkv-bias")
"""The variants transformers' GGUF loader reads (it leaves Qwen3's head_dim at 128, maps GPT-2's context to n_ctx,
and ignores Llama-3's rope_freqs)."""


def quiet(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = lmtrain(list(args))
    if code != 0:
        raise SystemExit(f"lmtrain {' '.join(args)} exited {code}")


def window_loss(model: Any, windows: list[list[int]]) -> tuple[float, int]:
    total = 0.0
    with torch.no_grad():
        for w in windows:
            logp = torch.log_softmax(model(torch.tensor([w[:-1]]))[0][0].double(), dim=-1)
            total -= float(logp[torch.arange(len(w) - 1), torch.tensor(w[1:])].sum())
    return total, sum(len(w) - 1 for w in windows)


def check(name: str, work: Path, steps: int) -> dict[str, Any]:
    flags, arch = VARIANTS[name]
    run = work / name / "run"
    if name == "bpe16k":
        bpe = work / "bpe16k"
        if not bpe.is_dir():
            quiet("tokenizer", "train", str(SAMPLE / "wiki.train.raw"), "--vocab-size", "16384", "--out", str(bpe))
        flags = tuple(str(bpe) if f == "BPE16K" else f for f in flags)
    if not (run / "checkpoints" / "latest").is_file():
        quiet("train", "--preset", "micro", "--data-dir", str(SAMPLE), "--out", str(run), *BASE, *flags,
              "--max-steps", str(steps), "--batch-size", "8", "--optimizer", "adamw", "--lr", "3e-3", "--warmup", "5",
              "--eval-every", "0", "--save-every", "0", "--sample-tokens", "0", "--doctor", "off")
    opened = open_model(run)
    model, tok = opened.model("cpu"), opened.tokenizer([ASSETS / "gpt2"])
    text = (SAMPLE / "wiki.valid.raw").read_text()
    ids = tok.encode(text)
    windows = [ids[i * 256 : i * 256 + 257] for i in range(16)]
    nll, count = window_loss(model, windows)
    row: dict[str, Any] = {"gguf_arch": arch, "flags": list(flags), "steps": steps, "lmtrain_ppl": perplexity(nll, count)}
    for dtype in DTYPES:
        path = work / name / f"model-{dtype}.gguf"
        quiet("export", str(run), "--format", "gguf", "--dtype", dtype, "--out", str(path), "--force")
        with llama(path, n_ctx=320, threads=2) as ref:
            nll, count = window_nll(ref, windows)
            row[f"{dtype}_ppl"] = perplexity(nll, count)
            row[f"{dtype}_bytes"] = path.stat().st_size
            if dtype != "f32":
                row[f"{dtype}_ppl_cost"] = row[f"{dtype}_ppl"] / row["f32_ppl"] - 1
                continue
            pieces = [*TEXTS, *text.split("\n = ")]
            row["tokens_equal"] = all(tokens(ref, t) == tok.encode(t) for t in pieces)
            row["special_tokens_equal"] = all(tokens(ref, t, special=True) == tok.encode_rendered(t) for t in pieces)
            theirs = logits(ref, ids[:256])
            with torch.no_grad():
                ours = model(torch.tensor([ids[:256]]))[0][0].numpy()
                row["max_logit_diff"] = float(np.abs(ours - theirs).max())
                row["max_abs_logit"] = float(np.abs(ours).max())
                gelu = with_llama_cpp_gelu(open_model(run).model("cpu"))(torch.tensor([ids[:256]]))[0][0].numpy()
                row["max_logit_diff_llama_cpp_gelu"] = float(np.abs(gelu - theirs).max())
            prompt = ids[:16]
            row["greedy_equal"] = greedy(ref, prompt, 32) == generate(model, torch.tensor([prompt]), 32, temperature=0)[
                0
            ].tolist()
    if name in TRANSFORMERS_READS:
        import transformers

        path = work / name / "model-f32.gguf"
        hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        x = torch.tensor([ids[:256]])
        with torch.no_grad():
            row["transformers_max_logit_diff"] = float((hf.eval()(x).logits - model(x)[0]).abs().max())
    return row


def run_all() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", default=REPO / "bench/results/gguf-variants-cpu-2core.json")
    parser.add_argument("--work", type=Path, default=REPO / "runs/bench-gguf-variants")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    rows = {}
    for name in VARIANTS:
        rows[name] = check(name, args.work, args.steps)
        print(name, json.dumps(rows[name]), flush=True)
    result = {"bench": "gguf-variants", "windows": "sample valid, 16 windows of 256 + 1", "variants": rows}
    args.out.write_text(json.dumps(result | {"provenance": provenance()}, indent=2) + "\n")


if __name__ == "__main__":
    run_all()
