"""Downloads against a local HTTP server: verified checksum, mirrors, atomic files, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from lmtrain.data.datasets import Archive, DataPaths, get_dataset, locate_split
from lmtrain.data.download import download, download_first, extract_zip
from lmtrain.errors import DataError

SPLIT_TEXT = {s: f" = {s.title()} Article = \n \n Some {s} text .\n".encode() for s in ("train", "valid", "test")}


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving files from a fresh folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve_wikitext2(root: Path) -> tuple[bytes, str]:
    data = _zip({f"wikitext-2-raw/wiki.{s}.raw": t for s, t in SPLIT_TEXT.items()} | {"wikitext-2-raw/": b""})
    (root / "wikitext-2-raw-v1.zip").write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def test_missing_split_is_downloaded_verified_and_extracted(server, tmp_path: Path) -> None:
    base, root = server
    data, sha = _serve_wikitext2(root)
    archive = Archive("wikitext-2-raw-v1.zip", (f"{base}/missing.zip", f"{base}/wikitext-2-raw-v1.zip"), sha, len(data))
    spec = replace(get_dataset("wikitext-2"), archive=archive)
    cache = tmp_path / "cache"
    paths = DataPaths(None, tmp_path / "env-without-files", cache)
    logs: list[str] = []
    path = locate_split(spec, "train", paths, log=logs.append)
    assert path == cache / "wikitext-2-raw" / "wiki.train.raw"
    assert path.read_bytes() == SPLIT_TEXT["train"]
    assert (cache / "wikitext-2-raw" / "wiki.test.raw").read_bytes() == SPLIT_TEXT["test"]
    assert not (cache / "downloads" / "wikitext-2-raw-v1.zip").exists()
    assert any("downloading" in line for line in logs)
    (root / "wikitext-2-raw-v1.zip").unlink()  # the cache now answers without the server
    assert locate_split(spec, "valid", paths, log=logs.append).read_bytes() == SPLIT_TEXT["valid"]


def test_checksum_mismatch_is_refused_and_leaves_no_file(server, tmp_path: Path) -> None:
    base, root = server
    _serve_wikitext2(root)
    dest = tmp_path / "dl" / "w.zip"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{base}/wikitext-2-raw-v1.zip", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_size_mismatch_is_refused(server, tmp_path: Path) -> None:
    base, root = server
    data, sha = _serve_wikitext2(root)
    with pytest.raises(DataError, match=f"is {len(data)} bytes, expected {len(data) + 1}"):
        download(f"{base}/wikitext-2-raw-v1.zip", tmp_path / "w.zip", sha, size=len(data) + 1)


def test_all_mirrors_failing_names_each_failure(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DataError) as info:
        download_first([f"{base}/a.zip", f"{base}/b.zip"], tmp_path / "x.zip", "0" * 64)
    assert "a.zip" in str(info.value) and "b.zip" in str(info.value) and "404" in str(info.value)


def test_failed_download_is_a_one_line_error_naming_the_way_out(server, tmp_path: Path) -> None:
    base, _ = server
    archive = Archive("wikitext-2-raw-v1.zip", (f"{base}/gone.zip",), "0" * 64, 1)
    spec = replace(get_dataset("wikitext-2"), archive=archive)
    with pytest.raises(DataError) as info:
        locate_split(spec, "test", DataPaths(None, None, tmp_path / "cache"), log=lambda _: None)
    message = str(info.value)
    assert "wiki.test.raw" in message and "--data-dir" in message and "\n" not in message


@pytest.mark.parametrize("evil", ["../escape.txt", "a/../../escape.txt", "/abs/escape.txt"])
def test_zip_entries_outside_the_target_are_refused(tmp_path: Path, evil: str) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"ok/fine.txt": b"fine", evil: b"owned"}))
    target = tmp_path / "out" / "target"
    with pytest.raises(DataError, match="outside the target folder"):
        extract_zip(archive, target)
    assert not (tmp_path / "out" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (target / "ok" / "fine.txt").exists()  # nothing is written before every entry is checked


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    archive.write_bytes(_zip({"ok.txt": b"x"}, symlink="link"))
    with pytest.raises(DataError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")


def test_corrupt_zip_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a valid zip archive"):
        extract_zip(archive, tmp_path / "out")


def test_official_archives_are_registered_with_checksums() -> None:
    for name in ("wikitext-103", "wikitext-2", "wikitext-103-v1", "wikitext-2-v1"):
        archive = get_dataset(name).archive
        assert archive is not None and len(archive.sha256) == 64 and archive.size > 1_000_000
        assert all(url.startswith("https://") and url.endswith(archive.filename) for url in archive.urls)
    assert isinstance(get_dataset("wikitext-103").files, MappingProxyType)
