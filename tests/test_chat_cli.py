"""`lmtrain chat` (`eval/chat_session.py`, `cli/chat.py`): each turn's reply equals generation without a cache on the
rendered conversation although the cache is kept across turns, replies stream, the terminal commands work, scripts
get one reply per message or per JSON line, and the released SmolLM2 answers as `generate --chat` does."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from chat_helpers import chat_checkpoint
from gguf_helpers import cli, smollm2_file
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.eval.chat_session import ChatSession
from lmtrain.eval.generate import Sampling, generate
from lmtrain.model.config import ModernConfig

pytest.importorskip("tokenizers")

CFG = ModernConfig(vocab_size=50304, n_layer=2, n_head=2, d_model=32, d_ff=64, max_seq_len=256, mlp="swiglu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    model, tok, ckpt = chat_checkpoint(tmp_path_factory.mktemp("chat-cli"), CFG)
    return model, ChatRenderer(tok), ckpt


def greedy() -> Sampling:
    return Sampling(temperature=0, top_k=None, top_p=None, generator=None)


def test_each_reply_equals_uncached_generation_though_the_cache_is_kept(setup) -> None:
    model, renderer, _ = setup
    session = ChatSession(model, renderer, sampling=greedy(), max_new_tokens=12, system="Be brief.")
    pieces: list[str] = []
    first = session.reply("Hello there", on_text=pieces.append)
    second = session.reply("And again?")
    assert "".join(pieces) == first.text and first.new_tokens == 12 and first.stop == "max new tokens"
    assert first.reused == 0 and second.reused > 20  # turn 2 reuses the cached conversation
    for turn, reply in ((1, first), (2, second)):
        messages = session.messages[: 2 * turn]  # system, user (, assistant, user)
        prompt = torch.tensor([renderer.prompt(messages)])
        out = generate(model, prompt, 12, temperature=0, stop_ids=renderer.end_of_turn, use_cache=False)
        assert renderer.tokenizer.decode(out[0, prompt.size(1) :].tolist()) == reply.text
    session.clear()
    assert session.messages == [{"role": "system", "content": "Be brief."}]
    session.clear(system="Be long.")
    assert session.messages == [{"role": "system", "content": "Be long."}]


def test_a_conversation_longer_than_the_context_is_one_line(setup, tmp_path: Path) -> None:
    _, _, ckpt = setup
    code, _, err = cli("chat", str(ckpt), "--message", "word " * 300)
    assert code == 2 and "leaves no room for a reply" in err and len(err.strip().splitlines()) == 1, err


def test_scripts_get_one_reply_per_message_and_per_json_line(setup) -> None:
    model, renderer, ckpt = setup
    code, out, err = cli("chat", str(ckpt), "--message", "Hi", "--temperature", "0", "--max-new-tokens", "5")
    assert code == 0, err
    expected = ChatSession(model, renderer, sampling=greedy(), max_new_tokens=5).reply("Hi").text
    assert out == expected + "\n"
    lines = [
        {"messages": [{"role": "user", "content": "Hi"}]},
        {
            "messages": [
                {"role": "user", "content": "A"},
                {"role": "assistant", "content": "B"},
                {"role": "user", "content": "C"},
            ]
        },
    ]
    stdin = "".join(json.dumps(x) + "\n" for x in lines)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.StringIO(stdin))  # not a terminal: one conversation a line
        code, out, err = cli("chat", str(ckpt), "--temperature", "0", "--max-new-tokens", "5")
    assert code == 0, err
    replies = [json.loads(x) for x in out.splitlines()]
    assert replies[0]["reply"] == expected and replies[0]["new_tokens"] == 5 and len(replies) == 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.StringIO('{"messages": []}\n'))
        code, _, err = cli("chat", str(ckpt), "--temperature", "0")
    assert code == 2 and "stdin line 1 is not a conversation ending with a user message" in err


def test_the_terminal_commands(setup) -> None:
    _, _, ckpt = setup
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmtrain", "chat", str(ckpt), "--temperature", "0", "--max-new-tokens", "3"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    for line in ("Hello", "/system Talk like a pirate.", "/bogus", "Hi", "/clear", "/exit"):
        os.write(leader, (line + "\n").encode())
        time.sleep(0.2)
    out, err = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, err
    assert out.count("model> ") == 2 and out.count("[stopped: max new tokens]") == 2
    assert "unknown command /bogus" in err


@pytest.mark.slow
def test_smollm2_answers_and_remembers_the_conversation() -> None:
    from lmtrain.interop.open import open_model

    opened = open_model(smollm2_file())
    renderer = ChatRenderer(opened.tokenizer([]))
    session = ChatSession(opened.model("cpu"), renderer, sampling=greedy(), max_new_tokens=40)
    first = session.reply("What is the capital of France?")
    assert first.text == "The capital of France is Paris." and first.stop == "end of turn"  # as generate --chat says
    second = session.reply("And the capital of Germany?")
    assert "Berlin" in second.text and second.reused > 30  # the first turn stays in the cache
