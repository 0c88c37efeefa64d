"""The token arrays a run trains and validates on, prepared before the trainer is built."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmtrain.config import DataConfig, RunConfig
from lmtrain.data.chat.conversations import ChatFields
from lmtrain.data.chat.prepare import ChatPrepareOptions, prepare_chat
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.data.chat.tokenizer import chat_tokenizer
from lmtrain.data.corpus import Corpus, find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.loader import TrainSampler, window_starts
from lmtrain.data.prepare import PrepareOptions, prepare_corpus
from lmtrain.data.shards import TokenStream
from lmtrain.data.tokenizers import open_tokenizer
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.errors import ConfigError, DataError
from lmtrain.train.feed import ChatFeed, Feed, PackedSplit, TextFeed


@dataclass(frozen=True)
class TrainingData:
    """Training and validation tokens (read-only memmaps, or streams over shards), where they came from, and their
    tokenizer."""

    train: np.ndarray | TokenStream
    valid: np.ndarray | TokenStream
    sources: Mapping[str, Mapping[str, Any]]
    """Per split: identity of its data (sha256), tokens, documents."""
    tokenizer: Tokenizer
    chat: tuple[PackedSplit, PackedSplit] | None = None
    """--dataset chat: the train and valid conversations, packed into rows of the run's seq_len (`train` and
    `valid` are their ids)."""

    def trained_share(self) -> float | None:
        """--dataset chat: the share of the training conversations' tokens the loss trains; None for text."""
        if self.chat is None:
            return None
        train = self.sources["train"]
        return train["trained_tokens"] / max(1, train["tokens"])

    def feed(self, cfg: RunConfig) -> Feed:
        """What the run's steps and evaluations compute on: packed conversations, or windows of the streams."""
        tc = cfg.train
        if self.chat is not None:
            assert self.chat[0].seq_len == cfg.seq_len, "conversations packed for another seq_len"
            return ChatFeed(
                *self.chat,
                batch_size=tc.batch_size,
                seed=tc.seed,
                pad_id=self.tokenizer.eot_id,
                eval_rows=tc.evaluation.windows,
            )
        return TextFeed(
            self.train,
            self.valid,
            seq_len=cfg.seq_len,
            batch_size=tc.batch_size,
            seed=tc.seed,
            eval_windows=tc.evaluation.windows,
            doc_mask_id=self.tokenizer.eot_id if cfg.data.doc_mask else None,
        )


def run_tokenizer(data: DataConfig, paths: DataPaths) -> Tokenizer:
    """The tokenizer `data.tokenizer` names; for conversations, with the chat template they render with (ChatML's
    tokens added where --chat-template chatml needs them)."""
    tokenizer = open_tokenizer(data.tokenizer, paths.tokenizer_search())
    return chat_tokenizer(tokenizer, data.chat_template) if data.dataset == "chat" else tokenizer


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
    if spec.name == "chat":
        return _chat_data(cfg, corpus, paths, tokenizer, log)
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


def _chat_data(
    cfg: RunConfig, corpus: Corpus, paths: DataPaths, tokenizer: Tokenizer, log: Callable[[str], None]
) -> TrainingData:
    """The prepared conversations of --dataset chat, checked to give at least one step and one validation row."""
    renderer = ChatRenderer(tokenizer)
    fields = ChatFields.parse(cfg.data.chat_fields) if cfg.data.chat_fields else None
    splits = prepare_chat(corpus, renderer, paths.cache_dir, ChatPrepareOptions(fields=fields, log=log))
    train, valid = splits["train"], splits["valid"]
    data = TrainingData(
        train=train.ids(),
        valid=valid.ids(),
        sources={
            split: {
                "sha256": p.meta["key"] + f":{split}",
                "tokens": p.tokens,
                "conversations": p.examples,
                "trained_tokens": p.trained_tokens,
            }
            for split, p in splits.items()
        },
        tokenizer=tokenizer,
        chat=(
            PackedSplit(train, cfg.seq_len, cfg.data.chat_overflow),
            PackedSplit(valid, cfg.seq_len, cfg.data.chat_overflow),
        ),
    )
    rows = len(data.chat[0].rows)
    if rows < cfg.train.batch_size:
        raise DataError(
            f"the train conversations pack into {rows:,} rows of seq_len={cfg.seq_len}: not one "
            f"batch of {cfg.train.batch_size}; lower --batch-size or --seq-len"
        )
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


def run_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    """The run's optimizer steps: --max-steps, else --epochs, else one epoch."""
    tc = cfg.train
    return tc.max_steps or math.ceil((tc.epochs or 1.0) * steps_per_epoch)
