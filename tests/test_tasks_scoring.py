"""Benchmark scoring on tiny CPU models: the answers of hand-made items known in advance, and the batched, packed
scorer item for item equal to the one-at-a-time reference (`bench/tasks_reference.py`) for both architectures, with
and without a padded vocabulary, in fp32."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from conftest import MODEL_VARIANTS, randomised
from lmtrain.bench.tasks_reference import reference_item
from lmtrain.data.datasets import DataPaths
from lmtrain.model.config import ModernConfig
from lmtrain.model.registry import build_model
from lmtrain.runtime import eval_mode
from lmtrain.tasks.encode import Encoded
from lmtrain.tasks.evaluate import LoadedTask, load_tasks, score_tasks
from lmtrain.tasks.locate import TaskPaths
from lmtrain.tasks.score import score_items
from task_helpers import expected_right, write_jsonl, write_tasks

CPU = torch.device("cpu")
V = 50257

VARIANTS = {
    name: dataclasses.replace(MODEL_VARIANTS[name], vocab_size=V, max_seq_len=32)
    for name in ("gpt2", "modern", "modern-swiglu-gqa-untied-padded-capped")
}
"""conftest's configs with GPT-2's vocabulary (the tasks are text) and a context short enough to crop 2-shot prompts."""


def repeating_model(max_seq_len: int = 64):
    """A fresh modern model: it predicts the token it has just read (task_helpers explains why)."""
    torch.manual_seed(0)
    cfg = ModernConfig(vocab_size=V, n_layer=1, n_head=2, d_model=128, d_ff=256, max_seq_len=max_seq_len)
    return build_model(cfg).eval()


def loaded(toml: Path, cap: int | None = None) -> list[LoadedTask]:
    paths = TaskPaths(None, DataPaths(None, None, toml.parent / "cache", download=False))
    return load_tasks(str(toml), paths, cap, log=lambda _m: None)


def reference(model, tasks, tokenizer) -> list[list[tuple[bool, list[float]]]]:
    with eval_mode(model):
        return [
            [
                reference_item(model, t.spec, t.items, i, tokenizer=tokenizer, bos=tokenizer.bos_id)
                for i in range(len(t.items))
            ]
            for t in tasks
        ]


@pytest.mark.parametrize(("shots", "context"), [(0, 64), (2, 64), (2, 12)])
def test_hand_made_items_get_the_answers_known_in_advance(tmp_path: Path, tokenizer, shots: int, context: int) -> None:
    """Right options repeat the word before them; the repeating model finds them, cropped to 12 tokens or not."""
    tasks = loaded(write_tasks(tmp_path, shots=shots))
    model = repeating_model(context)
    report = score_tasks(model, tokenizer, tasks, device=CPU)
    for task, score, ref in zip(tasks, report.tasks, reference(model, tasks, tokenizer)):
        expected = expected_right(task.spec.type, task.items)
        assert [o.correct for o in score.outcomes] == expected, task.spec.name
        assert [right for right, _ in ref] == expected, task.spec.name
    assert [round(t.accuracy, 4) for t in report.tasks] == [1.0, 1.0, 0.6667]
    assert report.core is None and report.bos == "'<|endoftext|>' (id 50256)"


def random_word_tasks(tmp_path: Path) -> Path:
    """Tasks of every shape whose options differ in length and words, some prompts longer than the context."""
    import random

    rng = random.Random(0)
    words = "the a of and to in is was he she it they river stone light paper ocean winter".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    mc = [
        {
            "query": text(rng.randint(2, 12)),
            "choices": [text(rng.randint(1, 4)) for _ in range(4)],
            "gold": rng.randint(0, 3),
        }
        for _ in range(14)
    ]
    mc.append({"query": "same", "choices": ["twice", "twice"], "gold": 1})  # no scored token: NaN means, choice 0
    schema = [
        {
            "context_options": [text(rng.randint(1, 6)) for _ in range(2)],
            "continuation": text(rng.randint(1, 5)),
            "gold": rng.randint(0, 1),
        }
        for _ in range(14)
    ]
    lm = [{"context": text(rng.randint(2, 10)), "continuation": text(rng.randint(1, 3))} for _ in range(14)]
    entries = []
    for name, kind, records, shots in (
        ("mc", "multiple_choice", mc, 3),
        ("schema", "schema", schema, 1),
        ("lm", "language_modeling", lm, 2),
    ):
        write_jsonl(tmp_path / f"{name}.jsonl", records)
        entries.append(
            f'[[task]]\nname="{name}"\nfile="{name}.jsonl"\ntype="{kind}"\nshots={shots}\ndelimiter=" "\nbaseline=0\n'
        )
    (tmp_path / "random.toml").write_text("\n".join(entries))
    return tmp_path / "random.toml"


@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.slow) if v != "modern" else v for v in VARIANTS])
def test_batched_scoring_gives_the_reference_result_of_every_item(tmp_path: Path, tokenizer, variant: str) -> None:
    torch.manual_seed(0)
    model = randomised(build_model(VARIANTS[variant]), scale=0.3)
    tasks = loaded(random_word_tasks(tmp_path))
    report = score_tasks(model, tokenizer, tasks, device=CPU, budget=256)  # many small batches
    for score, ref in zip(report.tasks, reference(model, tasks, tokenizer)):
        assert [o.correct for o in score.outcomes] == [right for right, _ in ref], score.name
        for outcome, (_, means) in zip(score.outcomes, ref):
            assert outcome.mean_losses == pytest.approx(means, rel=1e-4, abs=1e-5, nan_ok=True)
    nan_item = report.tasks[0].outcomes[[line for line in report.tasks[0].lines].index(14)]
    assert nan_item.choice == 0 and all(math.isnan(m) for m in nan_item.mean_losses) and not nan_item.correct


def test_the_batch_budget_changes_no_outcome(tmp_path: Path, tokenizer) -> None:
    torch.manual_seed(1)
    model = randomised(build_model(VARIANTS["modern"]), scale=0.3)
    tasks = loaded(random_word_tasks(tmp_path))
    one = score_tasks(model, tokenizer, tasks, device=CPU, budget=1)  # one item per forward pass
    many = score_tasks(model, tokenizer, tasks, device=CPU, budget=1 << 16)  # every item in one
    for a, b in zip(one.tasks, many.tasks):
        assert [o.correct for o in a.outcomes] == [o.correct for o in b.outcomes]
        for x, y in zip(a.outcomes, b.outcomes):
            assert x.mean_losses == pytest.approx(y.mean_losses, rel=1e-4, abs=1e-5, nan_ok=True)


def test_a_packed_row_equals_each_option_run_alone(tokenizer) -> None:
    """The hidden states of a packed row's option tokens are those of the option's own sequence, position for
    position, for both architectures."""
    for cfg in (VARIANTS["gpt2"], VARIANTS["modern"]):
        torch.manual_seed(0)
        model = randomised(build_model(dataclasses.replace(cfg, vocab_size=97)), scale=0.3)
        item = Encoded(options=[[0, 5, 6, 7, 8], [0, 5, 6, 9], [0, 5, 1, 2, 3]], spans=[(2, 5), (2, 4), (2, 5)], gold=2)
        (outcome,) = score_items(model, [item], device=CPU)
        for k, (seq, (start, end)) in enumerate(zip(item.options, item.spans)):
            with torch.no_grad():
                logits, _ = model(torch.tensor([seq]))
            losses = torch.nn.functional.cross_entropy(
                logits[0, start - 1 : end - 1], torch.tensor(seq[start:end]), reduction="none"
            )
            assert outcome.mean_losses[k] == pytest.approx(float(losses.mean()), rel=1e-5)
