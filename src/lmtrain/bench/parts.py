"""Benchmark scripts made of parts (`bench/smollm2.py`, `bench/chat.py`): each part's JSON is written to WORK/parts/
and the part is skipped when its file is there, so a long script resumes where it stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

Part = Callable[[Path], dict[str, Any]]


def run_parts(parts: Mapping[str, Part], names: Iterable[str], work: Path) -> None:
    """Run each part `names` lists that has no result in WORK/parts/ yet, and write its result there (with the
    seconds it took)."""
    (work / "parts").mkdir(parents=True, exist_ok=True)
    for name in names:
        path = work / "parts" / f"{name}.json"
        if path.is_file():
            continue
        t0 = time.perf_counter()
        result = parts[name](work) | {"part_seconds": round(time.perf_counter() - t0, 1)}
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{name}: {json.dumps(result)[:400]}", flush=True)


def collected(parts: Iterable[str], work: Path) -> dict[str, Any]:
    """The results of the parts that have one, by name."""
    files = {name: work / "parts" / f"{name}.json" for name in parts}
    return {name: json.loads(path.read_text()) for name, path in files.items() if path.is_file()}
