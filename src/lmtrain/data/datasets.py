"""The dataset registry and where a split's file is found: --data-dir, $LMTRAIN_DATA_DIR, cache, download.

The built-in `sample` corpus and the GPT-2 BPE files ship inside the package (`lmtrain/assets/`), so the demo and
the tests need neither a download nor a local mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from lmtrain.data.download import download_first, extract_zip
from lmtrain.errors import DataError

SPLITS = ("train", "valid", "test")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
"""Files shipped inside the package: gpt2/ (the GPT-2 BPE) and sample/ (the built-in corpus), each with its LICENSE."""

Documents = Literal["wikitext", "text"]


@dataclass(frozen=True)
class Archive:
    """An official release archive: mirrors to try, and the size and SHA-256 it must have."""

    filename: str
    """File name of the zip."""
    urls: tuple[str, ...]
    """Addresses to try in order."""
    sha256: str
    """SHA-256 of the zip."""
    size: int
    """Size of the zip in bytes."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset lmtrain knows: its split files and how its text is cut into documents."""

    name: str
    """Name used on the command line."""
    description: str
    """One line for listings."""
    files: Mapping[str, str]
    """File name of each split."""
    documents: Documents
    """'wikitext': documents start at ` = Title = ` lines; 'text': separated by `<|endoftext|>` lines."""
    folder: str | None = None
    """Folder inside the official archive, also looked for under $LMTRAIN_DATA_DIR and the cache."""
    archive: Archive | None = None
    """Official archive to download when the files are nowhere else."""
    needs_data_dir: bool = field(default=False)
    """The files exist only where the user says (--data-dir)."""
    packaged: str | None = None
    """Folder under ASSETS holding the split files: a corpus shipped with lmtrain, read from there alone."""


def _wikitext(name: str, *, folder: str, ext: str, desc: str, zip_name: str, sha256: str, size: int) -> DatasetSpec:
    urls = (
        f"https://wikitext.smerity.com/{zip_name}",
        f"https://s3.amazonaws.com/research.metamind.io/wikitext/{zip_name}",
    )
    return DatasetSpec(
        name=name,
        description=desc,
        files=MappingProxyType({s: f"wiki.{s}.{ext}" for s in SPLITS}),
        documents="wikitext",
        folder=folder,
        archive=Archive(zip_name, urls, sha256, size),
    )


# Archive checksums and sizes as recorded by the Hugging Face `wikitext` dataset (dataset_infos.json).
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "wikitext-103": _wikitext(
            "wikitext-103",
            folder="wikitext-103-raw",
            ext="raw",
            desc="WikiText-103, raw text (default)",
            zip_name="wikitext-103-raw-v1.zip",
            sha256="91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
            size=191984949,
        ),
        "wikitext-2": _wikitext(
            "wikitext-2",
            folder="wikitext-2-raw",
            ext="raw",
            desc="WikiText-2, raw text",
            zip_name="wikitext-2-raw-v1.zip",
            sha256="ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
            size=4721645,
        ),
        "wikitext-103-v1": _wikitext(
            "wikitext-103-v1",
            folder="wikitext-103",
            ext="tokens",
            desc="WikiText-103, tokenized with <unk>",
            zip_name="wikitext-103-v1.zip",
            sha256="242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
            size=190229076,
        ),
        "wikitext-2-v1": _wikitext(
            "wikitext-2-v1",
            folder="wikitext-2",
            ext="tokens",
            desc="WikiText-2, tokenized with <unk>",
            zip_name="wikitext-2-v1.zip",
            sha256="92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
            size=4475746,
        ),
        "text": DatasetSpec(
            name="text",
            description="your own corpus at --data-dir: a file, folder, glob or datasets folder of text, JSON lines or "
            "parquet, optionally compressed; splits by file name, else held out by document hash",
            files=MappingProxyType({s: f"{s}.txt" for s in SPLITS}),
            documents="text",
            needs_data_dir=True,
        ),
        "chat": DatasetSpec(
            name="chat",
            description="your own conversations at --data-dir: JSON lines, JSON or parquet of messages, ShareGPT "
            "conversations or prompt/completion pairs (or fields mapped with --chat-fields), for fine-tuning; "
            "splits by file name, else held out by conversation hash",
            files=MappingProxyType({s: f"{s}.jsonl" for s in SPLITS}),
            documents="text",
            needs_data_dir=True,
        ),
        "sample": DatasetSpec(
            name="sample",
            description="built in (1.3 MB, no download): 62 WikiText articles cut from the WikiText-103 test split, "
            "for demos and tests; its figures are never comparable with published WikiText results",
            files=MappingProxyType({s: f"wiki.{s}.raw" for s in SPLITS}),
            documents="wikitext",
            packaged="sample",
        ),
    }
)

ALIASES: Mapping[str, str] = MappingProxyType({"wikitext": "wikitext-2"})
"""Names our users type for a registered dataset."""

DEFAULT_DATASET = "wikitext-103"


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called `name` (aliases allowed); an unknown name is a DataError listing the known ones."""
    spec = DATASETS.get(ALIASES.get(name, name))
    if spec is None:
        known = ", ".join([*DATASETS, *ALIASES])
        raise DataError(f"unknown dataset {name!r}; choose one of {known}")
    return spec


@dataclass(frozen=True)
class DataPaths:
    """Where data is looked for, in order: data_dir, env_dir/<folder>, cache_dir/<folder>, download."""

    data_dir: Path | None
    """--data-dir: a folder holding the split files (or their official folder)."""
    env_dir: Path | None
    """$LMTRAIN_DATA_DIR: a folder laid out like the official archives."""
    cache_dir: Path
    """The user cache (downloads, extracted archives, prepared splits)."""
    download: bool = True
    """Download the official archive when the files are nowhere else."""

    def tokenizer_search(self) -> list[Path]:
        """Folders that may hold gpt2/encoder.json + vocab.bpe, in the order they are tried (the package's copy last)."""
        found: list[Path] = []
        if self.data_dir is not None:
            found += [self.data_dir / "gpt2", self.data_dir.parent / "gpt2"]
        if self.env_dir is not None:
            found.append(self.env_dir / "gpt2")
        found.append(self.cache_dir / "gpt2")
        found.append(ASSETS / "gpt2")
        return found


def locate_split(spec: DatasetSpec, split: str, paths: DataPaths, log: Callable[[str], None] = print) -> Path:
    """Path of `split` of `spec`: the package's copy of a built-in corpus, else --data-dir, $LMTRAIN_DATA_DIR, the
    cache, or the official archive downloaded into the cache."""
    if split not in spec.files:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(spec.files)}")
    filename = spec.files[split]
    if spec.packaged is not None:
        return ASSETS / spec.packaged / filename
    if paths.data_dir is not None:
        tried = [paths.data_dir / filename] + ([paths.data_dir / spec.folder / filename] if spec.folder else [])
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise DataError(
            f"{spec.name}: {filename} (the {split} split) is not in --data-dir {paths.data_dir}"
            + (f" nor in {paths.data_dir / spec.folder}" if spec.folder else "")
            + "; put the file there or point --data-dir at the folder that holds it"
        )
    if spec.needs_data_dir:
        raise DataError(f"dataset {spec.name!r} needs --data-dir DIR with {', '.join(spec.files.values())}")
    assert spec.folder is not None
    tried = ([paths.env_dir / spec.folder / filename] if paths.env_dir else []) + [
        paths.cache_dir / spec.folder / filename
    ]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    where = ", ".join(str(p.parent) for p in tried)
    if spec.archive is None or not paths.download:
        raise DataError(f"{spec.name}: {filename} (the {split} split) not found in {where}; pass --data-dir DIR")
    archive = spec.archive
    zip_path = paths.cache_dir / "downloads" / archive.filename
    try:
        if not zip_path.is_file():
            download_first(archive.urls, zip_path, archive.sha256, archive.size, log=log)
        extract_zip(zip_path, paths.cache_dir)
    except DataError as exc:
        raise DataError(
            f"{spec.name}: {filename} (the {split} split) not found in {where}, and the download failed "
            f"({exc}); fetch {archive.urls[0]}, unzip it and pass --data-dir DIR or set LMTRAIN_DATA_DIR"
        ) from None
    zip_path.unlink(missing_ok=True)
    found = paths.cache_dir / spec.folder / filename
    if not found.is_file():
        raise DataError(f"{archive.filename} did not contain {spec.folder}/{filename}")
    return found
