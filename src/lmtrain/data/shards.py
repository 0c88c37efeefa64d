"""Prepared data on disk: one folder per prepared source, a shard per split per unit, one meta.json.

CACHE/prepared/<dataset>/<split or pool>-<key>-<tokenizer>/{meta.json, 000000.train.bin, 000000.valid.bin, ...}

While a source is prepared its shards go into the hidden `.<name>.partial/` beside that folder: each unit's shard
files are written under temporary names and renamed, then its marker `000000.json` (the unit's counts) is written
atomically. A prepare killed at any moment and started again keeps the units with a marker and redoes the others;
the folder is renamed into place, with its meta.json, only when every unit is done, so a run never reads a split that
is not complete. A split's token stream is its shards in order, an end-of-document id between two shards unless the
second continues the first's last document.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.units import UnitResult
from lmtrain.files import fsync_dir, fsync_file, write_text_atomic

FORMAT = 2
"""Version of the prepared layout; folders of another format are rebuilt."""
META = "meta.json"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
COUNTS = ("documents", "tokens", "bytes", "lines", "words")


class TokenStream:
    """Several token arrays read as one (slices copy across the seams); what a split of many shards loads as."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return int(self.ends[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, index: slice | int) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            part = int(np.searchsorted(self.ends, i, side="right"))
            return self.parts[part][i - (int(self.ends[part - 1]) if part else 0)]
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise IndexError("a token stream slices with step 1 only")
        out = []
        first = int(np.searchsorted(self.ends, start, side="right"))
        for part in range(first, len(self.parts)):
            base = int(self.ends[part - 1]) if part else 0
            if base >= stop:
                break
            out.append(self.parts[part][max(start - base, 0) : stop - base])
        if not out:
            return np.empty(0, dtype=self.dtype)
        return np.concatenate(out) if len(out) != 1 else np.asarray(out[0])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = np.concatenate(self.parts)
        return whole if dtype is None else whole.astype(dtype)


@dataclass(frozen=True)
class PreparedSplit:
    """One split of a prepared folder: its shards and counts (meta.json's `splits[split]`)."""

    folder: Path
    split: str
    meta: Mapping[str, Any]

    @property
    def info(self) -> Mapping[str, Any]:
        return self.meta["splits"][self.split]

    @property
    def num_tokens(self) -> int:
        return int(self.info["tokens"])

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return DTYPES[self.meta["dtype"]]

    @property
    def identity(self) -> str:
        """What a resumed run checks its data against: the source file's sha256 for a split of one file."""
        return str(self.info["identity"])

    def summary(self) -> dict[str, int]:
        """documents, tokens, original_tokens (words + lines) and bytes of the split."""
        info = self.info
        return {
            "documents": int(info["documents"]),
            "tokens": int(info["tokens"]),
            "original_tokens": int(info["words"]) + int(info["lines"]),
            "bytes": int(info["bytes"]),
        }

    def tokens(self) -> np.ndarray | TokenStream:
        """The split's token ids: a read-only memmap, or a TokenStream over the shards' memmaps."""
        parts: list[np.ndarray] = []
        eot = np.array([self.meta["tokenizer"]["eot_id"]], dtype=self.dtype)
        for shard in self.info["shards"]:
            if parts and not shard["continues"]:
                parts.append(eot)
            parts.append(np.memmap(self.folder / shard["file"], dtype=self.dtype, mode="r", shape=(shard["tokens"],)))
        return parts[0] if len(parts) == 1 else TokenStream(parts)


def read_prepared(folder: Path) -> dict[str, PreparedSplit] | None:
    """The splits of the prepared folder if it is complete and of the current format, else None."""
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("format") != FORMAT:
            return None
        width = np.dtype(DTYPES[meta["dtype"]]).itemsize
        for info in meta["splits"].values():
            for shard in info["shards"]:
                if (folder / shard["file"]).stat().st_size != width * shard["tokens"]:
                    return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {split: PreparedSplit(folder, split, meta) for split in meta["splits"]}


def partial_folder(final: Path) -> Path:
    """Where the shards of `final` are written until it is complete."""
    return final.parent / f".{final.name}.partial"


def open_partial(final: Path, plan: Mapping[str, Any]) -> Path:
    """The partial folder of `final`, kept (with the units a killed prepare finished) when it was started with the
    same `plan`, emptied when not."""
    partial = partial_folder(final)
    plan_file = partial / "plan.json"
    plan_text = json.dumps(dict(plan), sort_keys=True)
    if partial.is_dir() and (not plan_file.is_file() or plan_file.read_text() != plan_text):
        shutil.rmtree(partial)  # left by a prepare of other settings: nothing in it can be reused
    partial.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan_file, plan_text)
    return partial


class ShardWriter:
    """Writes units' shards into the partial folder; keeps the finished ones a killed prepare left."""

    def __init__(self, final: Path, dtype: type[np.unsignedinteger], plan: Mapping[str, Any]) -> None:
        self.final, self.dtype = final, dtype
        self.partial = open_partial(final, plan)

    def marker(self, index: int) -> Path:
        return self.partial / f"{index:06d}.json"

    def done(self, index: int) -> dict[str, Any] | None:
        """The counts of a unit whose shards are complete, else None."""
        try:
            parts = json.loads(self.marker(index).read_text())
            width = np.dtype(self.dtype).itemsize
            for split, part in parts["parts"].items():
                size = (self.partial / f"{index:06d}.{split}.bin").stat().st_size if part["tokens"] else 0
                if size != width * part["tokens"]:
                    return None
            return parts
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, result: UnitResult) -> dict[str, Any]:
        """Write the unit's shards, then its marker; returns the marker's content."""
        parts: dict[str, Any] = {}
        for split, part in result.parts.items():
            tokens = np.concatenate(part.tokens).astype(self.dtype) if part.tokens else np.empty(0, self.dtype)
            if len(tokens):
                path = self.partial / f"{result.index:06d}.{split}.bin"
                tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
                tokens.tofile(tmp)
                fsync_file(tmp)
                os.replace(tmp, path)
            c = part.counts
            parts[split] = {
                "tokens": len(tokens),
                "documents": part.documents,
                "bytes": c.bytes,
                "lines": c.lines,
                "words": c.words,
                "continues": part.continued,
            }
        content = {"parts": parts, "input_bytes": result.input_bytes}
        write_text_atomic(self.marker(result.index), json.dumps(content))
        return content

    def gather(self, units: int, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per split, the counts and shards of units 0..units-1 (meta.json's `splits`), from their markers."""
        totals: dict[str, dict[str, Any]] = {s: {k: 0 for k in COUNTS} | {"shards": []} for s in splits}
        for index in range(units):
            marker = self.done(index)
            assert marker is not None, f"unit {index} is not done"
            for split, part in marker["parts"].items():
                info = totals[split]
                for key in COUNTS:
                    info[key] += part[key]
                if part["tokens"]:
                    joined = not info["shards"] or part["continues"]
                    info["tokens"] += 0 if joined else 1
                    info["shards"].append(
                        {"file": f"{index:06d}.{split}.bin", "tokens": part["tokens"], "continues": joined}
                    )
        return totals

    def finish(self, totals: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
        """Write meta.json (`meta` with the gathered `totals` as its `splits`) and rename the folder into place."""
        publish(self.partial, self.final, {**meta, "splits": totals})


def publish(partial: Path, final: Path, meta: Mapping[str, Any]) -> None:
    """Write `meta` as the partial folder's meta.json, drop its plan.json and rename it into place as `final`
    (replacing what was there)."""
    write_text_atomic(partial / META, json.dumps(meta, indent=1) + "\n")
    (partial / "plan.json").unlink(missing_ok=True)
    fsync_dir(partial)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(partial, final)
    fsync_dir(final.parent)
