"""The token arrays a run trains and validates on, prepared before the trainer is built."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmtrain.config import DataConfig, RunConfig
from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.loader import TrainSampler, make_batch, window_starts
from lmtrain.data.prepare import PrepareOptions, prepare_corpus
from lmtrain.data.shards import TokenStream
from lmtrain.data.tokenizers import open_tokenizer
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.distributed.world import World
from lmtrain.errors import ConfigError, DataError


@dataclass(frozen=True)
class TrainingData:
    """Training and validation tokens (read-only memmaps, or streams over shards), where they came from, and their
    tokenizer."""

    train: np.ndarray | TokenStream
    valid: np.ndarray | TokenStream
    sources: Mapping[str, Mapping[str, Any]]
    """Per split: identity of its data (sha256), tokens, documents."""
    tokenizer: Tokenizer


def run_tokenizer(data: DataConfig, paths: DataPaths) -> Tokenizer:
    """The tokenizer `data.tokenizer` names."""
    return open_tokenizer(data.tokenizer, paths.tokenizer_search())


def tokenizer_opener(paths_of: Callable[[DataConfig], DataPaths]) -> Callable[[DataConfig], Tokenizer]:
    """For `decide_launch`: the tokenizer of a data config, looked for where `paths_of` says."""
    return lambda data: run_tokenizer(data, paths_of(data))


def load_training_data(cfg: RunConfig, paths: DataPaths, log: Callable[[str], None] = print) -> TrainingData:
    """Locate (or download) and prepare the train and valid splits of the run's dataset; check they fit the run."""
    spec = get_dataset(cfg.data.dataset)
    tokenizer = run_tokenizer(cfg.data, paths)
    if cfg.model.vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"the tokenizer {tokenizer.name} has {tokenizer.vocab_size:,} ids, more than the model's "
            f"vocab_size={cfg.model.vocab_size:,}; use the run's own tokenizer or start a new run"
        )
    corpus = find_corpus(spec, ["train", "valid"], paths, cfg.data.holdout_options(), log=log)
    options = PrepareOptions(text_field=cfg.data.text_field, log=log)
    prepared = {split: p for split, (p, _) in prepare_corpus(spec, corpus, paths, tokenizer, options).items()}
    data = TrainingData(
        train=prepared["train"].tokens(),
        valid=prepared["valid"].tokens(),
        sources={
            split: {"sha256": p.identity, "tokens": p.num_tokens, "documents": p.summary()["documents"]}
            for split, p in prepared.items()
        },
        tokenizer=tokenizer,
    )
    check_fits(cfg, data)
    return data


def check_fits(cfg: RunConfig, data: TrainingData) -> None:
    """One global batch of training windows and one validation window must fit in the splits."""
    batch = cfg.train.batch_size
    sampler = TrainSampler(len(data.train), cfg.seq_len, batch, cfg.train.seed)
    if sampler.steps_per_epoch == 0:
        raise DataError(
            f"the train split has {len(data.train):,} tokens, {sampler.windows} windows of "
            f"seq_len={cfg.seq_len}: not one batch of {batch}; lower --batch-size or --seq-len"
        )
    if len(window_starts(len(data.valid), cfg.seq_len)) == 0:
        raise DataError(f"the valid split has {len(data.valid)} tokens, fewer than seq_len+1={cfg.seq_len + 1}")


def run_length(cfg: RunConfig, n_train_tokens: int) -> tuple[TrainSampler, int]:
    """The run's window sampler and its optimizer steps (--max-steps, else --epochs, else one epoch)."""
    tc = cfg.train
    sampler = TrainSampler(n_train_tokens, cfg.seq_len, tc.batch_size, tc.seed)
    return sampler, tc.max_steps or math.ceil((tc.epochs or 1.0) * sampler.steps_per_epoch)


def rank_batches(
    tokens: np.ndarray, starts: np.ndarray, *, seq_len: int, micro: int, world: World, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the windows at `starts` (every world_size-th), in micro-batches; every rank yields as
    many batches (sharded models gather weights in every forward), the ranks that run out with targets of -100 that
    count for nothing."""
    ranks = world.world_size
    mine = starts[world.rank :: ranks]
    batches = math.ceil(math.ceil(len(starts) / ranks) / micro)
    for i in range(batches):
        chosen = mine[i * micro : (i + 1) * micro]
        if len(chosen):
            yield make_batch(tokens, chosen, seq_len, device)
        else:
            x, y = make_batch(tokens, starts[:1], seq_len, device)
            yield x, torch.full_like(y, -100)
