"""Held-out splits of a pool of documents, chosen by a seeded hash of each document's text.

A document's hash h (64 bits of BLAKE2b keyed by the seed) depends on its bytes alone, so identical documents always
share a split, and a document's split does not depend on the other files. Each held-out split owns a band of hash
values, valid's first: `--valid-fraction F` a band of width F (adding files moves no existing document between
splits); `--valid-docs N` the band up to the N-th smallest distinct hash of the pool (exactly N documents, more only
when held-out documents have duplicates; a new file moves an existing document out of the band only when one of its
own documents hashes below it). Everything outside the bands is train.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmtrain.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_FRACTION = 0.01
"""The share of a pool's documents held out for a split that has no files and no flag."""
SPAN = 1 << 64


def doc_hash(raw: bytes, seed: int) -> int:
    """The document's 64-bit hash under `seed`."""
    digest = hashlib.blake2b(raw, digest_size=8, key=seed.to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True)
class Take:
    """How one split is held out: `docs` documents or a `fraction` of them."""

    split: str
    docs: int | None = None
    fraction: float | None = None

    def describe(self) -> str:
        return f"{self.docs:,} documents" if self.docs is not None else f"{self.fraction:.4g} of the documents"


@dataclass(frozen=True)
class Holdout:
    """Which splits a pool's documents are held out for, how many, under which seed."""

    seed: int
    takes: tuple[Take, ...]

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(t.split for t in self.takes)

    @property
    def counts_documents(self) -> bool:
        """Some split takes a number of documents: the bands need every document's hash first."""
        return any(t.docs is not None for t in self.takes)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "takes": [{"split": t.split, "docs": t.docs, "fraction": t.fraction} for t in self.takes],
        }

    def bands(self, hashes: np.ndarray | None = None) -> Bands:
        """The hash bands; `hashes` (every document's, uint64) is needed when a split takes a number of documents."""
        import numpy as np

        bounds: list[tuple[str, int]] = []
        low = -1
        distinct = np.unique(hashes) if hashes is not None else None
        for take in self.takes:
            if take.fraction is not None:
                high = min(SPAN - 1, low + int(take.fraction * SPAN))
            else:
                assert distinct is not None and take.docs is not None
                above = distinct[distinct > low] if low >= 0 else distinct
                if len(above) < take.docs + 1:
                    raise DataError(
                        f"--{take.split}-docs {take.docs}: the pool holds {len(above):,} distinct documents there, "
                        f"too few to hold out {take.docs:,} and train on the rest; lower it"
                    )
                high = int(above[take.docs - 1])
            bounds.append((take.split, high))
            low = high
        return Bands(self.seed, tuple(bounds))


@dataclass(frozen=True)
class Bands:
    """A split for every document: the first band whose upper bound (inclusive) is at least its hash, else train."""

    seed: int
    bounds: tuple[tuple[str, int], ...]

    def split_of(self, raw: bytes) -> str:
        h = doc_hash(raw, self.seed)
        for split, high in self.bounds:
            if h <= high:
                return split
        return "train"

    def to_json(self) -> list[dict[str, Any]]:
        return [{"split": s, "max_hash": high} for s, high in self.bounds]


@dataclass(frozen=True, kw_only=True)
class HoldoutOptions:
    """The holdout flags: --valid-docs/--test-docs or --valid-fraction/--test-fraction, --split-seed."""

    valid_docs: int | None = None
    test_docs: int | None = None
    valid_fraction: float | None = None
    test_fraction: float | None = None
    seed: int = 0

    def given(self, split: str) -> bool:
        return getattr(self, f"{split}_docs") is not None or getattr(self, f"{split}_fraction") is not None

    def refuse_holdout(self, reason: str) -> None:
        """A ConfigError when a holdout flag is given for a corpus that holds nothing out."""
        for split in ("valid", "test"):
            if self.given(split):
                raise ConfigError(f"--{split}-docs/--{split}-fraction: {reason}; drop the flag")

    def holdout(self, missing: Sequence[str], has_own: Sequence[str]) -> Holdout | None:
        """How the `missing` splits are held out of the pool (None when none is); flags for `has_own` splits are
        errors."""
        for split in has_own:
            if self.given(split):
                raise ConfigError(
                    f"--{split}-docs/--{split}-fraction: the corpus has its own {split} files; drop the flag"
                )
        if not missing:
            return None
        takes = []
        for split in missing:
            docs, fraction = getattr(self, f"{split}_docs"), getattr(self, f"{split}_fraction")
            takes.append(Take(split, docs, None if docs is not None else (fraction or DEFAULT_FRACTION)))
        return Holdout(self.seed, tuple(takes))
