"""A checkpoint evaluated on a split: which data, which context and stride, which tokenizer, all worked out from what
the checkpoint recorded of its training, then token, word and byte perplexity (`perplexity.py`).

`lmtrain eval` is this function behind flags; the report, the benchmarks and the trainer can call it the same way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtrain.config import DataConfig, corpus_from
from lmtrain.data.datasets import DEFAULT_DATASET, SPLITS, DataPaths, DatasetSpec, get_dataset
from lmtrain.errors import ConfigError, DataError
from lmtrain.model.config import ModelConfig

if TYPE_CHECKING:  # perplexity.py imports torch, which this module leaves to the call that evaluates
    from lmtrain.eval.perplexity import PerplexityReport

EVAL_BATCH_TOKENS = 4096
"""Tokens per forward pass by default: 32 windows of 128, 4 of 1,024 (logits are chunked, so memory holds only the
hidden states). On the 2-core CPU 1,024 tokens per pass scored at 2.8x the training throughput."""


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    """What to evaluate a checkpoint on; what is left None comes from the checkpoint's own training."""

    split: str = "test"
    dataset: str | None = None
    """Default: the dataset the checkpoint was trained on."""
    context: int | None = None
    """Tokens per window, at most max_seq_len (default: the training window, else max_seq_len)."""
    stride: int | None = None
    """Tokens scored per window (default: the context, no overlap)."""
    batch_size: int | None = None
    """Windows per forward pass (default: EVAL_BATCH_TOKENS' worth, at least 1)."""
    windows: int | None = None
    """Score only the windows `train` validates on, the first `windows` from the split's start (0: every whole
    window), instead of every token with sliding windows: a run's validation loss at these weights."""
    device: str = "auto"
    dtype: str = "fp32"
    weights: str = "auto"
    """auto (the EMA weights where the run kept them), ema or raw."""
    corpus: Mapping[str, Any] = field(default_factory=dict)
    """Corpus keys (text_field, the holdout keys) given for this evaluation, over those the run recorded."""


@dataclass(frozen=True, kw_only=True)
class Windows:
    """How a split is cut into scored windows."""

    context: int
    stride: int
    batch_size: int
    notes: tuple[str, ...] = ()


def eval_windows(model: ModelConfig, trained_on: Mapping[str, Any], request: EvalRequest) -> Windows:
    """The context, stride and batch of an evaluation: the request's, else the training window; a ConfigError when
    they do not fit the model, and a note when the context reaches positions the model never trained on."""
    max_len = model.max_seq_len
    trained_len = int(trained_on.get("seq_len") or max_len)
    context = request.context or trained_len
    stride = request.stride or context
    if not 1 <= context <= max_len:
        raise ConfigError(f"--context {context} must be between 1 and the model's max_seq_len={max_len}")
    if not 1 <= stride <= context:
        raise ConfigError(f"--stride {stride} must be between 1 and the context ({context})")
    batch_size = request.batch_size if request.batch_size is not None else max(1, EVAL_BATCH_TOKENS // context)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be at least 1")
    if request.windows is not None and (request.windows < 0 or request.stride not in (None, context)):
        raise ConfigError(
            f"--windows {request.windows} takes whole training windows: give a count >= 0 (0: all) and no --stride"
        )
    notes = ()
    if context > trained_len:
        notes = (f"note: the model was trained on windows of {trained_len} tokens; positions past them are untrained",)
    return Windows(context=context, stride=stride, batch_size=batch_size, notes=notes)


def eval_data_source(
    trained_on: Mapping[str, Any], request: EvalRequest, paths: DataPaths
) -> tuple[DatasetSpec, DataPaths, DataConfig]:
    """The dataset, where its files are and how its corpus is read: the request's, else the training run's (its
    `--data-dir` too, when it still exists and the dataset is the same)."""
    dataset = request.dataset or trained_on.get("dataset") or DEFAULT_DATASET
    spec = get_dataset(dataset)
    if request.split not in SPLITS:
        raise DataError(f"unknown split {request.split!r}; choose one of {', '.join(SPLITS)}")
    same_data = spec.name == trained_on.get("dataset")
    trained_dir = trained_on.get("data_dir")
    if paths.data_dir is None and same_data and trained_dir:
        if Path(trained_dir).exists() or any(c in trained_dir for c in "*?["):
            paths = dataclasses.replace(paths, data_dir=Path(trained_dir))
    return spec, paths, corpus_from(request.corpus, trained_on if same_data else None)


@dataclass(frozen=True)
class CheckpointEval:
    """The perplexity of one checkpoint on one split, and what it was measured on."""

    checkpoint: Path
    dataset: str
    split: str
    report: PerplexityReport
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """`lmtrain eval --json`'s object."""
        return dataclasses.asdict(self.report) | {
            "dataset": self.dataset,
            "split": self.split,
            "checkpoint": str(self.checkpoint),
        }


def evaluate_checkpoint(
    path: Path, request: EvalRequest, paths: DataPaths, log: Callable[[str], None] = print
) -> CheckpointEval:
    """Token, word and byte perplexity of the model at `path` (a checkpoint folder, a run folder: its best, a
    transformers folder or a GGUF file) on `request.split`, with the tokenizer it carries and the data and windows
    worked out from it."""
    from lmtrain.data.corpus import find_corpus
    from lmtrain.data.prepare import PrepareOptions, prepare_corpus
    from lmtrain.eval.perplexity import perplexity_report, score_tokens, score_windows
    from lmtrain.interop.open import open_model
    from lmtrain.runtime import autocast, select_device, select_dtype

    opened = open_model(path, weights=request.weights)
    device = select_device(request.device)
    ckpt, model, config = opened.path, opened.model(device), opened.checkpoint
    trained_on = config.get("data", {})
    spec, paths, corpus_cfg = eval_data_source(trained_on, request, paths)
    windows = eval_windows(model.config, trained_on, request)
    for note in windows.notes:
        log(note)
    dtype = select_dtype(request.dtype, device)
    tokenizer = opened.tokenizer(paths.tokenizer_search())
    corpus = find_corpus(spec, [request.split], paths, corpus_cfg.holdout_options(), log=log)
    options = PrepareOptions(text_field=corpus_cfg.text_field, log=log)
    prepared = prepare_corpus(spec, corpus, paths, tokenizer, options)[request.split][0]
    log(
        f"{ckpt}: {spec.name} {request.split}, {prepared.num_tokens:,} tokens, context {windows.context}, "
        f"stride {windows.stride}"
    )
    t0 = time.perf_counter()
    common = dict(
        context=windows.context, batch_size=windows.batch_size, device=device, autocast=lambda: autocast(device, dtype)
    )
    if request.windows is None:
        scores = score_tokens(model, prepared.tokens(), stride=windows.stride, eot_id=tokenizer.eot_id, **common)
    else:
        try:
            scores = score_windows(model, prepared.tokens(), windows=request.windows, **common)
        except ValueError as e:
            raise DataError(f"{spec.name} {request.split}: {e}; lower --context") from None
    summary = prepared.summary()
    report = perplexity_report(
        scores,
        original_tokens=summary["original_tokens"],
        n_bytes=summary["bytes"],
        context=windows.context,
        stride=windows.stride,
        seconds=time.perf_counter() - t0,
        whole=request.windows is None,
    )
    return CheckpointEval(ckpt, spec.name, request.split, report, windows.notes)
