"""ChatCORE (`tasks/chat.py`, `tasks/answers.py`, `eval/batch_generate.py`): prompts of different lengths decoded
together with one KV cache give what each gives alone; lettered choices are scored by the letters' logits at the
reply's first position, as a model run on the prompt alone gives them; a GSM8K reply is right when its final number
is the answer's; `--tasks chatcore` finds ARC under core/ and GSM8K under chat/, and its figure is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chat_helpers import chat_checkpoint
from conftest import MODEL_VARIANTS, randomised
from gguf_helpers import cli
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.data.datasets import DataPaths
from lmtrain.errors import DataError
from lmtrain.eval.batch_generate import generate_batch
from lmtrain.eval.generate import generate
from lmtrain.model.config import ModernConfig
from lmtrain.model.registry import build_model
from lmtrain.tasks.answers import choice_message, final_number
from lmtrain.tasks.evaluate import load_tasks, score_tasks
from lmtrain.tasks.locate import TaskPaths
from lmtrain.tasks.spec import chat_table, select_tasks

pytest.importorskip("tokenizers")

CFG = ModernConfig(vocab_size=50304, n_layer=2, n_head=2, d_model=32, d_ff=64, max_seq_len=512, mlp="swiglu")
CHOICES = [
    {"query": "Question: Which is a colour?", "choices": ["red", "dog", "run"], "gold": 0},
    {"query": "Question: Two plus two?", "choices": ["3", "4", "5", "22"], "gold": 1},
    {"query": "Which is wet?", "choices": ["sand", "water"], "gold": 1},
]
SUMS = [
    {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"},
    {"question": "A pen costs $3. How much do 1,000 pens cost in dollars?", "answer": "#### 3,000"},
    {"question": "Say a number.", "answer": "#### 7"},
]


@pytest.mark.parametrize("name", list(MODEL_VARIANTS))
def test_prompts_decoded_together_give_what_each_gives_alone(name: str) -> None:
    torch.manual_seed(0)
    model = randomised(build_model(MODEL_VARIANTS[name]), scale=0.3).double()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 9, 1, 6)]
    alone = [generate(model, torch.tensor([p]), 7, temperature=0)[0, len(p) :].tolist() for p in prompts]
    # a token one row reaches after its first step that another row never reaches: one stops early, one goes on
    stop = next(t for a in alone for t in a[1:-1] if any(t not in b for b in alone))
    want = [a[: a.index(stop) + 1] if stop in a else a for a in alone]
    assert generate_batch(model, prompts, 7, stop_ids={stop}) == want
    assert any(len(w) < 7 for w in want) and any(len(w) == 7 for w in want)


def test_the_answer_rules() -> None:
    assert final_number("... so 18 eggs.\n#### 1,018") == "1018"
    assert final_number("She pays $18.00 in all.") == "18"  # no mark: the last number
    assert final_number("3.50 then 7.25") == "7.25" and final_number("#### -4") == "-4"
    assert final_number("no number here") is None
    message = choice_message("Question: Which?", ["x", "y"])
    assert (
        message
        == "Multiple Choice question: Which?\n- x=A\n- y=B\n\nRespond only with the letter of the correct answer."
    )


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("chatcore")
    model, tok, ckpt = chat_checkpoint(root, CFG)
    tasks = root / "tasks"
    tasks.mkdir()
    for name, items in (("mc", CHOICES), ("sums", SUMS)):
        (tasks / f"{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (tasks / "chat.toml").write_text(
        '[[task]]\nname = "my_mc"\nfile = "mc.jsonl"\ntype = "chat_choice"\nshots = 0\ndelimiter = ""\nbaseline = 30.0\n'
        '[[task]]\nname = "my_sums"\nfile = "sums.jsonl"\ntype = "chat_answer"\nshots = 0\ndelimiter = ""\n'
        "baseline = 0.0\nreply_tokens = 12\n"
    )
    return model, tok, ckpt, tasks / "chat.toml"


def test_chat_tasks_score_as_the_model_answers_each_item_alone(chat_model, tmp_path: Path) -> None:
    model, tok, _, toml = chat_model
    renderer = ChatRenderer(tok)
    paths = TaskPaths(None, DataPaths(None, None, tmp_path, download=False))
    loaded = load_tasks(str(toml), paths, None, log=lambda _m: None)
    report = score_tasks(model, tok, loaded, device=torch.device("cpu"))
    mc, sums = report.tasks
    letters = [tok.encode(x)[0] for x in "ABCD"]
    for item, outcome in zip(loaded[0].items, mc.outcomes):
        prompt = renderer.prompt([{"role": "user", "content": choice_message(item["query"], item["choices"])}])
        logits, _ = model(torch.tensor([prompt]))
        scores = logits[0, -1, letters[: len(item["choices"])]]
        assert outcome.choice == int(scores.argmax()) and outcome.correct == (outcome.choice == item["gold"])
    for item, outcome in zip(loaded[1].items, sums.outcomes):
        prompt = renderer.prompt([{"role": "user", "content": item["question"]}])
        out = generate(model, torch.tensor([prompt]), 12, temperature=0, stop_ids=tok.stop_ids)[0, len(prompt) :]
        assert outcome.reply == tok.decode([t for t in out.tolist() if t not in tok.stop_ids])
        assert outcome.correct == (final_number(outcome.reply or "") == final_number(item["answer"]))
    assert mc.centred == pytest.approx((mc.accuracy - 0.3) / 0.7) and report.chatcore is None  # not ChatCORE's tasks
    code, out, err = cli("eval", str(chat_model[2]), "--tasks", str(toml), "--json")
    assert code == 0, err
    assert json.loads(out)["tasks"]["my_mc"]["accuracy"] == mc.accuracy


def test_chatcore_finds_arc_under_core_and_gsm8k_under_chat(tmp_path: Path) -> None:
    specs, asked = select_tasks("chatcore")
    assert asked == {"chatcore"} and [s.name for s in specs] == list(chat_table().tasks)
    assert [s.folder for s in specs] == ["core", "core", "chat"] and all(s.chatcore for s in specs)
    mirror = tmp_path / "mirror"
    (mirror / "chat" / "gsm8k").mkdir(parents=True)
    (mirror / "chat" / "gsm8k" / "test.jsonl").write_text(json.dumps(SUMS[0]) + "\n")  # not the published file
    paths = TaskPaths(None, DataPaths(None, mirror, tmp_path / "cache", download=False))
    with pytest.raises(DataError, match=r"chat/gsm8k/test.jsonl \(task gsm8k\) has SHA-256 .* not the pinned"):
        load_tasks("gsm8k", paths, None, log=lambda _m: None)
    with pytest.raises(DataError, match=r"no file for task arc_easy_chat: looked in .*mirror/core/world_knowledge"):
        load_tasks("arc_easy_chat", paths, None, log=lambda _m: None)


def test_a_model_without_a_chat_template_is_one_line(chat_model, tmp_path: Path, trained_run: Path) -> None:
    _, _, _, toml = chat_model
    code, _, err = cli("eval", str(trained_run), "--tasks", str(toml))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "has no chat template; give one with --chat-template FILE" in last and "Traceback" not in err
