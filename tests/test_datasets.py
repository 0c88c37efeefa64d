"""Dataset names and where split files are looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmtrain.data.datasets import ASSETS, DataPaths, get_dataset, locate_split
from lmtrain.errors import DataError


def _put(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(" = T = \n x\n")
    return path


def test_names_and_aliases() -> None:
    assert get_dataset("wikitext").name == "wikitext-2"
    assert get_dataset("wikitext-103").files["train"] == "wiki.train.raw"
    assert get_dataset("wikitext-103-v1").files["test"] == "wiki.test.tokens"
    assert get_dataset("wikitext-2-v1").folder == "wikitext-2"
    assert get_dataset("text").files["valid"] == "valid.txt"
    with pytest.raises(DataError, match="unknown dataset 'wikitext-3'.*wikitext-103.*text.*wikitext"):
        get_dataset("wikitext-3")


def test_data_dir_first_then_its_official_folder(tmp_path: Path) -> None:
    spec = get_dataset("wikitext-103")
    direct = _put(tmp_path / "d", "wiki.train.raw")
    nested = _put(tmp_path / "p" / "wikitext-103-raw", "wiki.train.raw")
    env = _put(tmp_path / "env" / "wikitext-103-raw", "wiki.train.raw")
    assert locate_split(spec, "train", DataPaths(tmp_path / "d", tmp_path / "env", tmp_path / "c")) == direct
    assert locate_split(spec, "train", DataPaths(tmp_path / "p", tmp_path / "env", tmp_path / "c")) == nested
    assert locate_split(spec, "train", DataPaths(None, tmp_path / "env", tmp_path / "c")) == env


def test_an_explicit_data_dir_never_falls_back(tmp_path: Path) -> None:
    spec = get_dataset("wikitext-103")
    _put(tmp_path / "env" / "wikitext-103-raw", "wiki.valid.raw")
    with pytest.raises(DataError, match=r"wiki\.valid\.raw \(the valid split\) is not in --data-dir"):
        locate_split(spec, "valid", DataPaths(tmp_path / "empty", tmp_path / "env", tmp_path / "c"))


def test_env_dir_then_cache(tmp_path: Path) -> None:
    spec = get_dataset("wikitext-2-v1")
    cached = _put(tmp_path / "c" / "wikitext-2", "wiki.test.tokens")
    assert locate_split(spec, "test", DataPaths(None, tmp_path / "env", tmp_path / "c")) == cached


def test_no_download_error_names_every_place_looked(tmp_path: Path) -> None:
    spec = get_dataset("wikitext-2")
    with pytest.raises(DataError) as info:
        locate_split(spec, "train", DataPaths(None, tmp_path / "env", tmp_path / "c", download=False))
    message = str(info.value)
    assert str(tmp_path / "env" / "wikitext-2-raw") in message and str(tmp_path / "c" / "wikitext-2-raw") in message


def test_text_dataset_needs_a_data_dir(tmp_path: Path) -> None:
    spec = get_dataset("text")
    with pytest.raises(DataError, match="needs --data-dir"):
        locate_split(spec, "train", DataPaths(None, tmp_path, tmp_path / "c"))
    path = _put(tmp_path / "mine", "train.txt")
    assert locate_split(spec, "train", DataPaths(tmp_path / "mine", None, tmp_path / "c")) == path


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        locate_split(get_dataset("wikitext-2"), "dev", DataPaths(None, None, tmp_path))


def test_tokenizer_search_order(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data" / "wikitext-sample-raw", tmp_path / "env", tmp_path / "cache")
    assert paths.tokenizer_search() == [
        tmp_path / "data" / "wikitext-sample-raw" / "gpt2",
        tmp_path / "data" / "gpt2",
        tmp_path / "env" / "gpt2",
        tmp_path / "cache" / "gpt2",
        ASSETS / "gpt2",  # the package's own copy, before tiktoken's download
    ]


def test_the_sample_is_built_in_and_read_from_the_package_alone(tmp_path: Path) -> None:
    spec = get_dataset("sample")
    elsewhere = DataPaths(tmp_path / "data", tmp_path / "env", tmp_path / "cache", download=False)
    for split in ("train", "valid", "test"):
        assert locate_split(spec, split, elsewhere) == ASSETS / "sample" / f"wiki.{split}.raw"
    assert (ASSETS / "sample" / "LICENSE").read_text().count("CC BY-SA 3.0") == 1
    assert "WikiText-103 test split" in spec.description and "never comparable" in spec.description
