"""Shared fixtures: the local data mirror (skipped with a reason where absent), tokenizer, tiny configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LMTRAIN = str(Path(sys.executable).with_name("lmtrain"))
"""The installed console script beside this interpreter (the venv need not be activated)."""


def _shared_data() -> Path | None:
    for candidate in (os.environ.get("LMTRAIN_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "gpt2" / "encoder.json").is_file():
            return Path(candidate).resolve()
    return None


SHARED = _shared_data()
NO_SHARED = "needs the data mirror (../shared/data or $LMTRAIN_DATA_DIR with gpt2/ and WikiText files)"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The local data mirror; tests using it are skipped, with the reason, where it is absent."""
    if SHARED is None:
        pytest.skip(NO_SHARED)
    return SHARED


def shared_file(relative: str) -> Path:
    """A file of the mirror, or a skip naming it."""
    if SHARED is None:
        pytest.skip(NO_SHARED)
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"needs {relative} in the data mirror")
    return path


@pytest.fixture(scope="session")
def gpt2_dir(shared_data: Path) -> Path:
    return shared_data / "gpt2"


@pytest.fixture(scope="session")
def tokenizer(gpt2_dir: Path):
    from lmtrain.data.tokenizer import load_tokenizer

    return load_tokenizer([gpt2_dir])


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never write to the real user cache."""
    monkeypatch.setenv("LMTRAIN_CACHE_DIR", str(tmp_path / "user-cache"))
