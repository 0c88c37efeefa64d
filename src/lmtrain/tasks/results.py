"""Benchmark results kept with a run: `tasks.json` in the run folder (in the checkpoint folder of a checkpoint that
belongs to no run, such as an imported one), one entry per step, the latest scoring of a step replacing an earlier
one; and the table of GPT-2's published figures that reports put beside a run's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmtrain.checkpoint import CHECKPOINTS
from lmtrain.files import write_text_atomic

TASKS_FILE = "tasks.json"

GPT2_REFERENCE: dict[str, dict[str, float]] = {
    "GPT-2 124M": {
        "hellaswag_zeroshot": 0.309,
        "lambada_openai": 0.323,
        "hellaswag": 0.308,
        "piqa": 0.623,
        "arc_easy": 0.412,
        "arc_challenge": 0.222,
        "core": 0.1139,
    },
    "GPT-2 355M": {
        "hellaswag_zeroshot": 0.390,
        "lambada_openai": 0.426,
        "hellaswag": 0.395,
        "piqa": 0.670,
        "arc_easy": 0.480,
        "arc_challenge": 0.262,
        "core": 0.1849,
    },
    "GPT-2 774M": {
        "hellaswag_zeroshot": 0.440,
        "lambada_openai": 0.488,
        "hellaswag": 0.444,
        "piqa": 0.698,
        "arc_easy": 0.535,
        "arc_challenge": 0.264,
        "core": 0.2146,
    },
    "GPT-2 1558M": {
        "hellaswag_zeroshot": 0.502,
        "lambada_openai": 0.523,
        "hellaswag": 0.512,
        "piqa": 0.725,
        "arc_easy": 0.595,
        "arc_challenge": 0.299,
        "core": 0.2565,
    },
}
"""The published OpenAI GPT-2 checkpoints' accuracies and 22-task CORE (nanochat dev/estimate_gpt3_core.ipynb)."""


def results_file(source: Path) -> Path:
    """Where a model's results go: its run folder's tasks.json for a checkpoint of a run, the folder's own for a
    checkpoint or transformers folder, `NAME.tasks.json` beside a model file (a GGUF file)."""
    if source.is_file():
        return source.with_name(f"{source.name}.{TASKS_FILE}")
    return (source.parent.parent if source.parent.name == CHECKPOINTS else source) / TASKS_FILE


def read_results(path: Path) -> dict[int, dict[str, Any]]:
    """The entries of a tasks.json (a folder: the one in it) by step ({} when there is none or it is unreadable)."""
    try:
        data = json.loads((path / TASKS_FILE if path.is_dir() else path).read_text())
    except (OSError, ValueError):
        return {}
    return {int(step): entry for step, entry in data.items() if str(step).isdigit() and isinstance(entry, dict)}


def record_results(path: Path, step: int, entry: dict[str, Any]) -> Path:
    """Add (or replace) the entry of `step` in a tasks.json (a folder: the one in it), atomically."""
    path = path / TASKS_FILE if path.is_dir() else path
    found = read_results(path)
    found[step] = entry
    write_text_atomic(path, json.dumps({str(k): found[k] for k in sorted(found)}, indent=2) + "\n")
    return path
