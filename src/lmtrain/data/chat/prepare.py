"""Conversations prepared as corpora are: rendered once (`render.py`) into shards cached by content, resumable.

CACHE/prepared/chat/<split or pool>-<key>-<tokenizer>/{meta.json, 000000.train.ids, 000000.train.mask,
000000.train.lens, 000000.valid.ids, ...}

The key is the sha256 of every input file, the field mapping, the split or the holdout, the tokenizer and the chat
template. Conversations are rendered in units of `unit` conversations (file order); each unit's shards carry, per
split, the ids, a byte per id saying whether it is trained (`mask`) and the length of each conversation (`lens`: the
example boundaries). A unit's files are written under temporary names and renamed, then its marker; a prepare killed
at any moment and started again redoes only the units without one, and the folder is renamed into place with its
meta.json only when every unit is done. Held-out conversations are chosen by a seeded hash of their messages
(`holdout.py`), as documents are: the same conversation is always in the same split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain import __version__
from lmtrain.data.chat.conversations import ChatFields, Conversation, read_conversations
from lmtrain.data.chat.render import ChatRenderer, Rendered
from lmtrain.data.corpus import Corpus, Source
from lmtrain.data.holdout import Bands, doc_hash
from lmtrain.data.prepare import LOCKS, file_digest
from lmtrain.data.shards import DTYPES, META, TokenStream, open_partial, partial_folder, publish
from lmtrain.errors import DataError
from lmtrain.files import exclusive_lock, fsync_file, write_text_atomic

FORMAT = 1
"""Version of the prepared chat layout; folders of another format are rebuilt."""
UNIT = 4096
"""Conversations per unit (one shard per split per unit)."""
ARRAYS = {"ids": None, "mask": np.uint8, "lens": np.uint32}
"""The files of a shard and their dtypes (None: the tokenizer's)."""


def conversation_bytes(conversation: Conversation) -> bytes:
    """What a conversation's holdout hash is taken of: its messages as canonical JSON."""
    return json.dumps(conversation.as_dicts(), ensure_ascii=False, sort_keys=True).encode()


@dataclass(frozen=True)
class ChatSplit:
    """One split of a prepared chat folder: every conversation's ids, trained ids and length."""

    folder: Path
    split: str
    meta: Mapping[str, Any]

    @property
    def info(self) -> Mapping[str, Any]:
        return self.meta["splits"][self.split]

    @property
    def examples(self) -> int:
        return int(self.info["examples"])

    @property
    def tokens(self) -> int:
        return int(self.info["tokens"])

    @property
    def trained_tokens(self) -> int:
        return int(self.info["trained"])

    def _array(self, name: str) -> np.ndarray | TokenStream:
        dtype = ARRAYS[name] or DTYPES[self.meta["dtype"]]
        parts = []
        for shard in self.info["shards"]:
            count = shard["examples"] if name == "lens" else shard["tokens"]
            parts.append(np.memmap(self.folder / f"{shard['file']}.{name}", dtype=dtype, mode="r", shape=(count,)))
        if not parts:
            return np.empty(0, dtype)
        return parts[0] if len(parts) == 1 else TokenStream(parts)

    def ids(self) -> np.ndarray | TokenStream:
        """(tokens,) every conversation's ids, one after another."""
        return self._array("ids")

    def mask(self) -> np.ndarray | TokenStream:
        """(tokens,) uint8: 1 where the id is trained."""
        return self._array("mask")

    def starts(self) -> np.ndarray:
        """(examples + 1,) int64: conversation i is ids[starts[i]:starts[i + 1]]."""
        lens = np.asarray(self._array("lens"), dtype=np.int64)
        return np.concatenate([[0], np.cumsum(lens)])

    def summary(self) -> dict[str, int]:
        return {"conversations": self.examples, "tokens": self.tokens, "trained_tokens": self.trained_tokens}


def read_chat(folder: Path) -> dict[str, ChatSplit] | None:
    """The splits of a complete prepared chat folder of the current format, else None."""
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("format") != FORMAT or meta.get("kind") != "chat":
            return None
        widths = {name: np.dtype(dtype or DTYPES[meta["dtype"]]).itemsize for name, dtype in ARRAYS.items()}
        for info in meta["splits"].values():
            for shard in info["shards"]:
                for name, width in widths.items():
                    count = shard["examples"] if name == "lens" else shard["tokens"]
                    if (folder / f"{shard['file']}.{name}").stat().st_size != width * count:
                        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {split: ChatSplit(folder, split, meta) for split in meta["splits"]}


@dataclass(frozen=True, kw_only=True)
class ChatPrepareOptions:
    fields: ChatFields | None = None
    unit: int = UNIT
    force: bool = False
    log: Callable[[str], None] | None = None


def _conversations(source: Source, fields: ChatFields | None) -> Iterator[Conversation]:
    for file in source.files:
        if file.format == "text":
            raise DataError(
                f"{file.describe()} is plain text, not conversations; train on it with --dataset text, or give "
                f"conversations as JSON lines, JSON or parquet"
            )
        if file.format == "datasets":
            raise DataError(f"{file.describe()}: give conversations as JSON lines, JSON or parquet files")
        yield from read_conversations(file.path, fields)


def _assignment(source: Source, fields: ChatFields | None) -> str | Bands:
    if source.split is not None:
        return source.split
    holdout = source.holdout
    assert holdout is not None
    if not holdout.counts_documents:
        return holdout.bands()
    hashes = [doc_hash(conversation_bytes(c), holdout.seed) for c in _conversations(source, fields)]
    return holdout.bands(np.asarray(hashes, dtype=np.uint64))


class _Writer:
    """Each unit's shards and marker in the partial folder; the markers of units a killed prepare finished."""

    def __init__(self, partial: Path, dtype: type[np.unsignedinteger]) -> None:
        self.partial, self.dtype = partial, dtype

    def marker(self, index: int) -> Path:
        return self.partial / f"{index:06d}.json"

    def done(self, index: int) -> dict[str, Any] | None:
        try:
            parts = json.loads(self.marker(index).read_text())
            for split, part in parts.items():
                for name, dtype in ARRAYS.items():
                    count = part["examples"] if name == "lens" else part["tokens"]
                    path = self.partial / f"{index:06d}.{split}.{name}"
                    if part["examples"] and path.stat().st_size != np.dtype(dtype or self.dtype).itemsize * count:
                        return None
            return parts
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, index: int, by_split: Mapping[str, list[Rendered]]) -> None:
        parts = {}
        for split, rendered in by_split.items():
            arrays = {
                "ids": np.concatenate([r.ids for r in rendered]).astype(self.dtype),
                "mask": np.concatenate([r.trained for r in rendered]).astype(np.uint8),
                "lens": np.asarray([len(r.ids) for r in rendered], dtype=np.uint32),
            }
            for name, array in arrays.items():
                path = self.partial / f"{index:06d}.{split}.{name}"
                tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
                array.tofile(tmp)
                fsync_file(tmp)
                os.replace(tmp, path)
            parts[split] = {
                "examples": len(rendered),
                "tokens": len(arrays["ids"]),
                "trained": int(arrays["mask"].sum()),
            }
        write_text_atomic(self.marker(index), json.dumps(parts))


def prepare_chat_source(
    source: Source, renderer: ChatRenderer, cache_dir: Path, options: ChatPrepareOptions
) -> dict[str, ChatSplit]:
    """Render `source`'s conversations into the cache, or reuse an identical earlier result."""
    tokenizer = renderer.tokenizer
    digests = [file_digest(f) for f in source.files]
    identity = {
        "format": FORMAT,
        "files": digests,
        "fields": options.fields.describe() if options.fields else None,
        "split": source.split,
        "holdout": source.holdout.to_json() if source.holdout else None,
        "tokenizer": tokenizer.fingerprint(),
        "template_sha256": hashlib.sha256(renderer.template.source.encode()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    folder = cache_dir / "prepared" / "chat" / f"{source.split or 'pool'}-{key[:16]}-{tokenizer.cache_id()}"
    existing = None if options.force else read_chat(folder)
    if existing is not None:
        return existing
    with exclusive_lock(cache_dir / LOCKS / f"prepare-chat-{folder.name}.lock"):
        existing = None if options.force else read_chat(folder)
        if existing is not None:
            return existing
        if options.force:
            shutil.rmtree(partial_folder(folder), ignore_errors=True)
        try:
            _prepare_locked(source, renderer, options, folder=folder, identity=identity, key=key)
        except DataError:
            shutil.rmtree(partial_folder(folder), ignore_errors=True)  # bad input: nothing of it is worth keeping
            raise
    prepared = read_chat(folder)
    if prepared is None:
        raise DataError(f"prepared conversations in {folder} could not be read back; delete it and prepare again")
    return prepared


def _prepare_locked(
    source: Source, renderer: ChatRenderer, options: ChatPrepareOptions, *, folder: Path, identity: dict, key: str
) -> None:
    t0 = time.perf_counter()
    assign = _assignment(source, options.fields)
    partial = open_partial(folder, {"key": key, "unit": options.unit, "bands": repr(assign)})
    writer = _Writer(partial, renderer.tokenizer.dtype)
    splits = source.splits
    totals = {s: {"examples": 0, "tokens": 0, "trained": 0, "shards": []} for s in splits}
    batch: list[Conversation] = []
    index = reused = 0

    def flush() -> None:
        nonlocal index, reused
        parts = writer.done(index)
        if parts is None:
            by_split: dict[str, list[Rendered]] = {}
            for conv in batch:
                split = assign if isinstance(assign, str) else assign.split_of(conversation_bytes(conv))
                by_split.setdefault(split, []).append(renderer.render(conv))
            writer.write(index, by_split)
            parts = writer.done(index)
            assert parts is not None
        else:
            reused += 1
        for split, part in parts.items():
            info = totals[split]
            for name in ("examples", "tokens", "trained"):
                info[name] += part[name]
            info["shards"].append({"file": f"{index:06d}.{split}", **part})
        batch.clear()
        index += 1

    for conv in _conversations(source, options.fields):
        batch.append(conv)
        if len(batch) == options.unit:
            flush()
    if batch:
        flush()
    _check_splits(totals, source)
    meta = {
        "format": FORMAT,
        "kind": "chat",
        "lmtrain_version": __version__,
        "source": {"files": [{"path": f.describe(), **d} for f, d in zip(source.files, identity["files"])]},
        "key": key,
        "fields": identity["fields"],
        "holdout": identity["holdout"],
        "bands": assign.to_json() if isinstance(assign, Bands) else None,
        "tokenizer": identity["tokenizer"],
        "template_sha256": identity["template_sha256"],
        "end_of_turn_ids": sorted(renderer.end_of_turn),
        "dtype": np.dtype(renderer.tokenizer.dtype).name,
        "units": index,
        "reused_units": reused,
        "seconds": round(time.perf_counter() - t0, 3),
        "splits": totals,
    }
    if options.log is not None:
        counts = ", ".join(
            f"{s} {t['examples']:,} conversations, {t['trained']:,} of {t['tokens']:,} tokens trained"
            for s, t in totals.items()
        )
        options.log(f"prepare chat {source.split or 'pool'}: {counts} ({index - reused} of {index} units rendered)")
    publish(partial, folder, meta)


def prepare_chat(
    corpus: Corpus, renderer: ChatRenderer, cache_dir: Path, options: ChatPrepareOptions
) -> dict[str, ChatSplit]:
    """Every split of `corpus` (found as `--dataset text` finds its files: `corpus.find_corpus`), each source
    rendered once."""
    done: dict[Source, dict[str, ChatSplit]] = {}
    out = {}
    for split, source in corpus.sources.items():
        if source not in done:
            done[source] = prepare_chat_source(source, renderer, cache_dir, options)
        out[split] = done[source][split]
    return out


def _check_splits(totals: Mapping[str, Mapping[str, Any]], source: Source) -> None:
    where = ", ".join(f.describe() for f in source.files[:3]) + (" ..." if len(source.files) > 3 else "")
    total = sum(t["examples"] for t in totals.values())
    if total == 0:
        raise DataError(f"{where}: no conversations; the data needs at least one")
    for split, info in totals.items():
        if info["examples"]:
            continue
        if split == "train":
            raise DataError(f"{where}: every one of the {total:,} conversations was held out; hold out fewer")
        raise DataError(
            f"{where}: holding out conversations of {total:,} left the {split} split empty; pass --{split}-docs N "
            f"(or add {split} files)"
        )
