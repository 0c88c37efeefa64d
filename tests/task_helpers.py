"""Hand-made benchmark tasks for the tests, and a model whose answers to them are known.

A fresh modern model (projections at zero, tied embedding) predicts the token it has just read: each block starts as
the identity, so the logits are norm(e_x) . e_j, largest for j = x. Against it an option that repeats the token
before it wins, and a language-modelling continuation is right exactly when it repeats that token.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = "dog cat fish bird tree rock lamp door book cup".split()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def repeat_items(n: int = 12) -> dict[str, list[dict]]:
    """Items of each record shape whose right answer repeats the word before it (and `gold` says which)."""
    mc, schema, lm = [], [], []
    for i in range(n):
        w, other, third = WORDS[i % 10], WORDS[(i + 3) % 10], WORDS[(i + 6) % 10]
        gold = i % 2
        choices = [f"{w} {w}", f"{other} {third}"] if gold == 0 else [f"{other} {third}", f"{w} {w}"]
        mc.append({"query": f"I say {w}", "choices": choices, "gold": gold})
        options = [f"the {other}", f"the {w}"] if gold == 1 else [f"the {w}", f"the {other}"]
        schema.append({"context_options": options, "continuation": w, "gold": gold})
        right = i % 3 != 0  # every third one is wrong
        lm.append({"context": f"I say {w} ", "continuation": f"{w} {w}" if right else f"{other}"})
    return {"multiple_choice": mc, "schema": schema, "language_modeling": lm}


def write_tasks(folder: Path, *, shots: int = 2, n: int = 12) -> Path:
    """Three tasks (one per record shape) and their TOML file in `folder`; the TOML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for kind, records in repeat_items(n).items():
        name = f"repeat_{kind}"
        write_jsonl(folder / f"{name}.jsonl", records)
        baseline = 0.0 if kind == "language_modeling" else 50.0
        entries.append(
            f'[[task]]\nname = "{name}"\nfile = "{name}.jsonl"\ntype = "{kind}"\nshots = {shots}\n'
            f'delimiter = " "\nbaseline = {baseline}\n'
        )
    toml = folder / "tasks.toml"
    toml.write_text("\n".join(entries))
    return toml


def expected_right(kind: str, records: list[dict]) -> list[bool]:
    """Which items the repeating model gets right: every multiple-choice and schema item, and the language-modelling
    items whose continuation repeats the word."""
    if kind != "language_modeling":
        return [True] * len(records)
    return [r["continuation"].split()[0] == r["context"].split()[-1] for r in records]
