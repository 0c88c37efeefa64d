"""Shared fixtures: the packaged sample corpus and GPT-2 BPE, the WikiText-103 raw test split rebuilt from the sample,
the local data mirror (for the two tests that need the tokenized WikiText-103 files), tokenizer, tiny configs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path

import pytest

from lmtrain.data.datasets import ASSETS
from lmtrain.model.config import GPTConfig, ModernConfig

REPO = Path(__file__).resolve().parents[1]
LMTRAIN = str(Path(sys.executable).with_name("lmtrain"))
"""The installed console script beside this interpreter (the venv need not be activated)."""
SAMPLE = ASSETS / "sample"
"""The built-in corpus (`--dataset sample`): wiki.train.raw, wiki.valid.raw, wiki.test.raw."""
GPT2 = ASSETS / "gpt2"
"""The packaged GPT-2 BPE files."""
WIKITEXT103_TEST_RAW_SHA256 = "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08"
"""The WikiText-103 raw test split (identical to WikiText-2's), as the official archive holds it."""


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker (and every process a test starts) computes on one thread: two workers on a
    two-core machine, each with a thread per core, would make OpenMP's threads wait on each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def _mirror() -> Path | None:
    for candidate in (os.environ.get("LMTRAIN_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def mirror_file(relative: str) -> Path:
    """A file of the local data mirror ($LMTRAIN_DATA_DIR or ../shared/data), or a skip naming it: only the tokenized
    WikiText-103 files (`wikitext-103/wiki.*.tokens`) are read from there; nothing else of the suite needs it."""
    mirror = _mirror()
    path = mirror / relative if mirror is not None else None
    if path is None or not path.is_file():
        pytest.skip(f"needs {relative} of the official WikiText-103 (v1, tokenized) archive in $LMTRAIN_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def wikitext103_test_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WikiText-103 raw test split, rebuilt from the packaged sample (its three files are that split cut at article
    headings), checked against the official file's SHA-256; in a folder laid out as the official archive."""
    folder = tmp_path_factory.mktemp("wikitext") / "wikitext-103-raw"
    folder.mkdir()
    data = b"".join((SAMPLE / f"wiki.{split}.raw").read_bytes() for split in ("train", "valid", "test"))
    assert hashlib.sha256(data).hexdigest() == WIKITEXT103_TEST_RAW_SHA256
    (folder / "wiki.test.raw").write_bytes(data)
    return folder / "wiki.test.raw"


@pytest.fixture(scope="session")
def gpt2_dir() -> Path:
    return GPT2


@pytest.fixture(scope="session")
def tokenizer():
    from lmtrain.data.tokenizers.gpt2 import load_gpt2

    return load_gpt2([GPT2])


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def measured_peak(tmp_path_factory: pytest.TempPathFactory) -> str:
    """peak_flops.json as lmtrain writes it, measured once per session on matmuls up to 1,024 (a fraction of a second),
    for this process's threads and for the one thread of each torchrun rank the tests start: a run that finds it in
    its cache reports MFU without measuring the peak (seconds of 4,096-wide matmuls) again."""
    import json
    from dataclasses import asdict

    import torch

    from lmtrain import hardware

    cpu, entries, threads = torch.device("cpu"), {}, torch.get_num_threads()
    try:
        for n in sorted({threads, 1}):
            torch.set_num_threads(n)
            flops, size = hardware.measure_peak(cpu, "fp32", max_size=1024)
            name = hardware.device_name(cpu)
            peak = hardware.Peak(device_name=name, dtype="fp32", measured_flops=flops, matmul_size=size)
            entries[hardware._cache_key(name, "fp32")] = asdict(peak)
    finally:
        torch.set_num_threads(threads)
    return json.dumps(entries, indent=2)


def seed_peak(cache: Path, measured_peak: str) -> Path:
    """`cache` (created) holding the session's measured peak; returns it."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "peak_flops.json").write_text(measured_peak)
    return cache


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, measured_peak: str) -> None:
    """Tests never write to the real user cache; theirs starts with the session's measured peak."""
    monkeypatch.setenv("LMTRAIN_CACHE_DIR", str(seed_peak(tmp_path / "user-cache", measured_peak)))


FAST_MODEL = ("--preset", "micro", "--d-model", "32", "--n-head", "2", "--n-layer", "1", "--max-seq-len", "32")
"""A model small enough that a training step takes milliseconds (the GPT-2 vocabulary stays)."""


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


def train_args(sample_dir: Path, out: Path, *extra: str) -> list[str]:
    """`lmtrain train` arguments for a fast run on the sample (as `--dataset wikitext-103 --data-dir SAMPLE`)."""
    return [
        "train",
        *FAST_MODEL,
        "--data-dir",
        str(sample_dir),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--warmup",
        "2",
        "--lr",
        "1e-3",
        "--optimizer",
        "adamw",
        "--eval-windows",
        "8",
        "--log-every",
        "1",
        "--sample-tokens",
        "0",
        *extra,
    ]


def build_trainer(sample_dir: Path, out: Path, cache: Path, **keys):
    """A Trainer of the fast model on the sample with the given run keys, on a silent event bus."""
    from lmtrain.config import build_run_config
    from lmtrain.data.datasets import DataPaths
    from lmtrain.train.data import load_training_data
    from lmtrain.train.events import EventBus
    from lmtrain.train.trainer import Trainer

    flat = {"preset": "micro", "d_model": 32, "n_head": 2, "n_layer": 1, "max_seq_len": 32, "batch_size": 4}
    flat |= {"optimizer": "adamw", "lr": 3e-4}  # the golden losses' settings (runs default to Muon at the preset's LR)
    flat |= {"warmup": 1, "eval_windows": 8, "save_every": 0, "sample_tokens": 0, "data_dir": str(sample_dir)}
    cfg = build_run_config(flat | keys)
    data = load_training_data(cfg, DataPaths(sample_dir, None, cache, download=False), log=lambda _: None)
    return Trainer(cfg=cfg, data=data, out=out, bus=EventBus())


def make_plan(total_steps: int, start_step: int = 0, **fields):
    """A Plan of `total_steps` steps of 256 tokens, 39 steps per epoch, 16 validation windows, on the CPU."""
    from lmtrain.train.events import Plan

    base = dict(total_steps=total_steps, stop_at=total_steps, start_step=start_step, tokens_per_step=256)
    base |= dict(parameters=1, non_embedding_parameters=1, train_tokens=10_000, valid_tokens=1_000)
    base |= dict(steps_per_epoch=39, eval_windows=16, device="cpu", dtype="fp32")
    return Plan(**(base | fields))


def make_step(step: int, loss: float = 5.0, *, grad_norm: float = 1.0, log_point: bool = True, **fields):
    """A StepEnded of 256 tokens a step at 25,600 tokens/s."""
    from lmtrain.train.events import StepEnded

    base = dict(step=step, epoch=step / 39, loss=loss, lr=1e-3, grad_norm=grad_norm, tokens=step * 256)
    base |= dict(step_time=0.01, tokens_per_s=25_600.0, log_point=log_point)
    return StepEnded(**(base | fields))


class Recorder:
    """An observer that keeps every event it sees."""

    def __init__(self) -> None:
        self.events: list = []
        self.closed = False

    def on_event(self, event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def of(self, kind: type) -> list:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]


def read_jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def step_losses(out: Path) -> list[tuple[int, float]]:
    """(step, loss) of every training record of a run."""
    return [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "step"]


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this test run that every pytest-xdist worker shares (the session's own without xdist): what a
    session fixture builds there once, under `built_once`, the other workers read."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent / f"shared-{run}" if run else tmp_path_factory.getbasetemp()
    root.mkdir(parents=True, exist_ok=True)
    return root / name


def _trained(base: Path, peak: str, *model: str) -> Path:
    """A `micro` model of flags `model` trained for 60 steps on the sample (seconds on a CPU), once per test run
    however many workers ask for it (the first trains it, holding its lock; the others wait and read it); its run
    folder."""
    from lmtrain.cli import main
    from lmtrain.files import exclusive_lock

    out = base / "run"
    with exclusive_lock(base.with_name(base.name + ".lock")):
        if (out / "checkpoints" / "latest").is_file():
            return out
        _train_into(out, base, peak, model, main)
    return out


def _train_into(out: Path, base: Path, peak: str, model: tuple[str, ...], main) -> None:
    args = [
        "train",
        "--preset",
        "micro",
        "--data-dir",
        str(SAMPLE),
        "--out",
        str(out),
        "--cache-dir",
        str(seed_peak(base / "cache", peak)),
        "--max-steps",
        "60",
        "--batch-size",
        "8",
        "--warmup",
        "5",
        "--lr",
        "3e-3",
        "--optimizer",
        "adamw",
        "--eval-every",
        "0",
        "--save-every",
        "0",
        "--sample-tokens",
        "0",
        "--eval-windows",
        "16",
        "--log-every",
        "60",
        *model,
    ]
    log = io.StringIO()  # a fixture that a test asks for mid-call must not print into the test's captured output
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = main(args)
    assert code == 0, log.getvalue()[-2000:]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, measured_peak: str) -> Path:
    """A GPT-2 `micro` model trained for 60 steps on the sample; its run folder."""
    return _trained(shared_folder(tmp_path_factory, "trained"), measured_peak, "--arch", "gpt2")


@pytest.fixture(scope="session")
def trained_modern_run(tmp_path_factory: pytest.TempPathFactory, measured_peak: str) -> Path:
    """A modern `micro` model (untied head, grouped-query attention, the vocabulary padded to 64) trained for 60 steps
    on the sample with Muon (its zero-initialised projections grow too slowly under AdamW at 3e-3 for the attention
    to use the context in 60 steps); its run folder."""
    return _trained(
        shared_folder(tmp_path_factory, "trained-modern"),
        measured_peak,
        *("--arch", "modern", "--no-tie", "--n-kv-head", "1", "--pad-vocab-to", "64", "--optimizer", "muon"),
    )


MODEL_VARIANTS = {
    "gpt2": GPTConfig(vocab_size=97, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=16, dropout=0.0),
    "modern": ModernConfig(vocab_size=97, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=16),
    "modern-swiglu-gqa-untied-padded-capped": ModernConfig(
        vocab_size=97,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        d_model=32,
        d_ff=88,
        max_seq_len=16,
        mlp="swiglu",
        tie=False,
        pad_vocab_to=64,
        logit_softcap=30.0,
    ),
    "modern-gelu-no-qk-norm": ModernConfig(
        vocab_size=97, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=16, mlp="gelu", qk_norm=False
    ),
}
"""Small configs covering each architecture and the modern block's options, for tests on the CPU."""


def randomised(model, scale: float = 0.05, seed: int = 0):
    """`model` with noise added to every parameter (zero-initialised projections and heads too); in eval mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator).to(p.dtype))
    return model.eval()


def kill_9_once_saved(proc, checkpoint: Path, timeout_s: float = 120) -> None:
    """Kill `proc` (a training run) with SIGKILL, as the out-of-memory killer does, once `checkpoint` is written."""
    import signal
    import time

    deadline = time.monotonic() + timeout_s
    while not checkpoint.is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
