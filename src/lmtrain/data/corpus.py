"""What a corpus is made of: its files, which split each belongs to, and which splits are held out of a pool.

`--data-dir` of `--dataset text` is a file, a folder (every readable file under it, in path order) or a glob; or a
Hugging Face `datasets` folder written by `save_to_disk`. A file belongs to a split when its name or a folder on its
path says so (`train.jsonl`, `valid/part-1.txt`, `data/test-00000-of-00001.parquet`, `wiki.valid.raw`); the other
files form a pool with the train files, and each split without files of its own is held out of the pool by a
seeded hash of each document (`holdout.py`).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmtrain.data.datasets import SPLITS, DataPaths, DatasetSpec, Documents, locate_split
from lmtrain.data.formats import COMPRESSIONS, SUFFIXES, CorpusFile, file_format
from lmtrain.data.holdout import Holdout, HoldoutOptions
from lmtrain.errors import DATA_EXTRA, DataError

SPLIT_WORDS: Mapping[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
}
"""Words in a file or folder name that put its files in a split."""
DATASETS_MARKERS = ("dataset_dict.json", "state.json")
"""Files `datasets.Dataset(Dict).save_to_disk` writes at the top of its folder."""


@dataclass(frozen=True)
class Source:
    """What is prepared in one go: files that are one split, or a pool that train and held-out splits come from."""

    files: tuple[CorpusFile, ...]
    kind: Documents
    """How a text file is cut into documents."""
    split: str | None = None
    """The split every document belongs to; None for a pool."""
    holdout: Holdout | None = None
    """For a pool: which splits are held out of it, and how."""

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits preparing this source writes."""
        if self.split is not None:
            return (self.split,)
        assert self.holdout is not None
        return ("train", *self.holdout.splits)


@dataclass(frozen=True)
class Corpus:
    """A dataset's inputs: one Source per split that was asked for (a pool serves several)."""

    sources: Mapping[str, Source] = field(default_factory=dict)

    def files(self) -> list[CorpusFile]:
        """Every input file, once."""
        seen: dict[CorpusFile, None] = {}
        for source in self.sources.values():
            seen.update(dict.fromkeys(source.files))
        return list(seen)


def split_of_path(path: Path, root: Path | None) -> str | None:
    """The split a file's name (`train.jsonl`, `wiki.valid.raw`, `test-00000-of-00002.parquet`) or a folder between
    `root` and it (`valid/`) names, or None."""
    name = path.name.lower()
    words = [*name.split("."), re.split(r"[-_]", name, maxsplit=1)[0]]
    folders = [p.lower() for p in path.relative_to(root).parts[:-1]] if root is not None else []
    for word in [*words, *reversed(folders)]:
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def _readable(paths: Sequence[Path], what: str) -> list[CorpusFile]:
    files = []
    for path in paths:
        found = file_format(path)
        if found is not None:
            files.append(CorpusFile(path, found[0], found[1]))
    if not files:
        kinds = ", ".join(SUFFIXES) + " (optionally " + ", ".join(COMPRESSIONS) + ")"
        raise DataError(f"{what} holds no file lmtrain reads; corpus files end in {kinds}")
    return files


def _datasets_folder(root: Path, log: Callable[[str], None]) -> dict[str | None, list[CorpusFile]]:
    """The splits of a `save_to_disk` folder: a DatasetDict's train/validation/test, or one Dataset (a pool)."""
    try:
        import datasets  # noqa: F401 - only checked here, read in the workers
    except ModuleNotFoundError:
        raise DataError(
            f"{root} is a Hugging Face datasets folder; reading it needs `datasets`: {DATA_EXTRA}"
        ) from None
    if not (root / "dataset_dict.json").is_file():
        return {None: [CorpusFile(root, "datasets")]}
    names = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
    found: dict[str | None, list[CorpusFile]] = {}
    for name in names:
        split = SPLIT_WORDS.get(name.lower())
        if split is None:
            log(f"note: {root}: split {name!r} is not train, validation or test; left out")
            continue
        found.setdefault(split, []).append(CorpusFile(root, "datasets", member=name))
    return found


def discover(location: Path, log: Callable[[str], None] = print) -> dict[str | None, list[CorpusFile]]:
    """The readable files at `location` (a file, folder or glob) by split (None: no split named)."""
    text = str(location)
    if any(c in text for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not paths:
            raise DataError(f"--data-dir {text}: the pattern matches no file")
        root = None
    elif location.is_file():
        return {None: _readable([location], str(location))}
    elif location.is_dir():
        if any((location / marker).is_file() for marker in DATASETS_MARKERS):
            return _datasets_folder(location, log)
        root = location
        paths = sorted(
            p
            for p in location.rglob("*")
            if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
        )
    else:
        raise DataError(f"--data-dir {location}: no such file or folder")
    files = _readable(paths, text)
    skipped = len(paths) - len(files)
    if skipped:
        log(f"note: {text}: {skipped} file(s) of other types left out")
    by_split: dict[str | None, list[CorpusFile]] = {}
    for file in files:
        by_split.setdefault(split_of_path(file.path, root), []).append(file)
    return by_split


def find_corpus(
    spec: DatasetSpec,
    splits: Sequence[str],
    paths: DataPaths,
    options: HoldoutOptions,
    log: Callable[[str], None] = print,
) -> Corpus:
    """The Source of each of `splits`: a registered dataset's split files (located or downloaded), or for `text`
    (and `chat`) the files at --data-dir, each split without files held out of the pool."""
    if not spec.needs_data_dir:
        options.refuse_holdout(f"--dataset {spec.name} has its own splits")
        return Corpus(
            {s: Source((CorpusFile(locate_split(spec, s, paths, log=log), "text"),), spec.documents, s) for s in splits}
        )
    if paths.data_dir is None:
        raise DataError(f"--dataset {spec.name} needs --data-dir: a file, a folder, a glob or a datasets folder")
    found = discover(paths.data_dir, log=log)
    pool = tuple(found.get("train", []) + found.get(None, []))
    missing = tuple(s for s in SPLITS if s != "train" and s not in found)
    holdout = options.holdout(missing, has_own=[s for s in SPLITS if s in found and s != "train"])
    sources: dict[str, Source] = {}
    for split in splits:
        if split != "train" and split in found:
            sources[split] = Source(tuple(found[split]), spec.documents, split)
            continue
        if not pool:
            raise DataError(
                f"--data-dir {paths.data_dir} has no train files and no files without a split name; add train files"
            )
        sources[split] = (
            Source(pool, spec.documents, "train") if not missing else Source(pool, spec.documents, None, holdout)
        )
    return Corpus(sources)
