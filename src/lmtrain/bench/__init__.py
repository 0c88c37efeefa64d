"""Benchmarks behind `lmtrain bench`; each reports a ratio against a peer measured in the same run."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def commit() -> str | None:
    """The git commit of the lmtrain source tree (with "-dirty" when it has changes), None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance() -> dict[str, Any]:
    """Where a benchmark ran: command, commit, library versions, Python, machine and CUDA."""
    import torch

    return {
        "command": " ".join(["lmtrain", *sys.argv[1:]]),
        "commit": commit(),
        "lmtrain": _version("lmtrain"),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.node()}",
        "threads": torch.get_num_threads(),
    }
