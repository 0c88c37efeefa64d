"""Download a file with a verified SHA-256, and extract a zip without writing outside its target."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from lmtrain.errors import DataError

CHUNK = 1 << 20


def download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    size: int | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """Fetch `url` to `dest`, verifying size and SHA-256; `dest` appears only once it is verified.

    The data is written to a temporary name beside `dest` and renamed at the end, so an interrupted
    or failed download never leaves a file at `dest`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or size
            log(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size is not None and received != size:
            raise DataError(f"download of {url} is {received} bytes, expected {size}; try again")
        got = digest.hexdigest()
        if got != sha256:
            raise DataError(f"checksum mismatch for {url}: sha256 {got}, expected {sha256}; refusing to use it")
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as exc:
        raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"could not download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def download_first(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    size: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """Try each mirror in turn; raise a DataError listing every failure when none works."""
    failures = []
    for url in urls:
        try:
            return download(url, dest, sha256, size=size, log=log)
        except DataError as exc:
            failures.append(str(exc))
    raise DataError("; ".join(failures) if failures else "no download address is known")


def _member_target(info: zipfile.ZipInfo, root: Path) -> Path | None:
    """Where `info` would be written under `root`; None for directories; DataError for unsafe entries."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(f"refusing to extract {name!r}: the archive holds a symbolic link")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise DataError(f"refusing to extract {name!r}: its path leads outside the target folder")
    target = (root / Path(*parts)).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"refusing to extract {name!r}: its path leads outside the target folder")
    return None if name.endswith("/") else target


def extract_zip(archive: Path, target: Path) -> list[Path]:
    """Extract `archive` into `target`, refusing any entry whose path would leave `target`.

    Every entry is checked before anything is written; each file is written under a temporary name
    and renamed, so a reader never sees a half-written file.
    """
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise DataError(f"{archive} is not a valid zip archive; delete it and download again") from None
    written = []
    with zf:
        plan = [(info, _member_target(info, root)) for info in zf.infolist()]
        for info, dest in plan:
            if dest is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
            try:
                with zf.open(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.replace(tmp, dest)
            except (zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{archive} is damaged ({exc}); delete it and download again") from None
            finally:
                tmp.unlink(missing_ok=True)
            written.append(dest)
    return written
