"""Conversations prepared as corpora are (`data/chat/prepare.py`): each split's shards hold exactly what the renderer
gives for each of its conversations (ids, trained ids, boundaries), held-out conversations are chosen by their
content, the result is cached by content, a killed prepare resumes with the units it finished, and bad input leaves
nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chat_helpers import chat_tokenizer
from lmtrain.data.chat.conversations import read_conversations
from lmtrain.data.chat.prepare import ChatPrepareOptions, conversation_bytes, prepare_chat
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.holdout import HoldoutOptions, doc_hash
from lmtrain.errors import DataError

pytest.importorskip("tokenizers")


def conversations(count: int, offset: int = 0) -> list[dict]:
    out = []
    for i in range(offset, offset + count):
        turns = [{"from": "human", "value": f"What is {i} + {i}?"}, {"from": "gpt", "value": f"It is {2 * i}."}]
        if i % 3 == 0:
            turns += [{"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes, " * (i % 7 + 1)}]
        out.append({"conversations": turns})
    return out


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> ChatRenderer:
    from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer

    return ChatRenderer(HFTokenizer(chat_tokenizer(tmp_path_factory.mktemp("tok")) / "tokenizer.json"))


def prepare(data: Path, cache: Path, renderer: ChatRenderer, holdout: HoldoutOptions | None = None, **options):
    paths = DataPaths(data, None, cache, download=False)
    corpus = find_corpus(get_dataset("text"), ["train", "valid", "test"], paths, holdout or HoldoutOptions(), log=print)
    return prepare_chat(corpus, renderer, cache, ChatPrepareOptions(**options))


def test_each_split_holds_exactly_the_rendered_conversations_it_was_given(renderer, tmp_path: Path) -> None:
    write(tmp_path / "data" / "chats.jsonl", conversations(60))
    splits = prepare(
        tmp_path / "data", tmp_path / "cache", renderer, HoldoutOptions(valid_docs=7, test_docs=3), unit=16
    )
    assert (splits["valid"].examples, splits["test"].examples, splits["train"].examples) == (7, 3, 50)
    seed = 0
    expected = {"train": [], "valid": [], "test": []}
    hashes = sorted(doc_hash(conversation_bytes(c), seed) for c in read_conversations(tmp_path / "data/chats.jsonl"))
    for conv in read_conversations(tmp_path / "data" / "chats.jsonl"):
        h = doc_hash(conversation_bytes(conv), seed)
        split = "valid" if h <= hashes[6] else "test" if h <= hashes[9] else "train"
        expected[split].append(renderer.render(conv))
    for split, rendered in expected.items():
        prepared = splits[split]
        ids, mask, starts = np.asarray(prepared.ids()), np.asarray(prepared.mask()), prepared.starts()
        assert len(starts) == len(rendered) + 1
        for i, r in enumerate(rendered):
            assert ids[starts[i] : starts[i + 1]].tolist() == r.ids.tolist()
            assert mask[starts[i] : starts[i + 1]].astype(bool).tolist() == r.trained.tolist()
        assert prepared.trained_tokens == sum(r.trained_count for r in rendered) == int(mask.sum())
        assert prepared.tokens == len(ids)
    assert len(splits["train"].info["shards"]) == 4  # 60 conversations in units of 16, each unit a shard
    again = prepare(tmp_path / "data", tmp_path / "cache", renderer, HoldoutOptions(valid_docs=7, test_docs=3), unit=16)
    assert again["train"].folder == splits["train"].folder and again["train"].meta == splits["train"].meta


def test_a_conversation_keeps_its_split_when_files_are_added(renderer, tmp_path: Path) -> None:
    write(tmp_path / "a" / "one.jsonl", conversations(40))
    before = prepare(
        tmp_path / "a", tmp_path / "cache", renderer, HoldoutOptions(valid_fraction=0.2, test_fraction=0.2)
    )
    write(tmp_path / "a" / "two.jsonl", conversations(40, offset=40))
    after = prepare(tmp_path / "a", tmp_path / "cache", renderer, HoldoutOptions(valid_fraction=0.2, test_fraction=0.2))

    def first(split) -> list[list[int]]:
        ids, starts = np.asarray(split.ids()), split.starts()
        return [ids[starts[i] : starts[i + 1]].tolist() for i in range(split.examples)]

    old = first(before["valid"])
    assert 0 < len(old) < 40 and first(after["valid"])[: len(old)] == old


def test_a_killed_prepare_resumes_with_the_units_it_finished(renderer, tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "data" / "train.jsonl", conversations(50))
    write(tmp_path / "data" / "valid.jsonl", conversations(5, offset=100))
    fresh = prepare(tmp_path / "data", tmp_path / "fresh", renderer, unit=8)
    calls = 0
    render = ChatRenderer.render

    def dies(self, conversation):
        nonlocal calls
        calls += 1
        if calls > 20:  # in the third unit of 8
            raise KeyboardInterrupt
        return render(self, conversation)

    monkeypatch.setattr(ChatRenderer, "render", dies)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path / "data", tmp_path / "cache", renderer, unit=8)
    assert list((tmp_path / "cache" / "prepared" / "chat").glob("*/meta.json")) == []  # nothing half-done is published
    monkeypatch.setattr(ChatRenderer, "render", render)
    resumed = prepare(tmp_path / "data", tmp_path / "cache", renderer, unit=8)
    assert resumed["train"].meta["reused_units"] == 2 and resumed["train"].meta["units"] == 7
    for split in ("train", "valid"):
        assert np.array_equal(np.asarray(resumed[split].ids()), np.asarray(fresh[split].ids()))
        assert np.array_equal(np.asarray(resumed[split].mask()), np.asarray(fresh[split].mask()))
        assert np.array_equal(resumed[split].starts(), fresh[split].starts())


def test_bad_input_is_refused_and_leaves_nothing_behind(renderer, tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("plain text, not conversations\n")
    with pytest.raises(DataError, match=r"train.txt is plain text, not conversations; train on it with --dataset text"):
        prepare(tmp_path / "text", tmp_path / "cache", renderer)
    records = conversations(30)
    records[25] = {"conversations": [{"from": "human", "value": "Hello?"}]}
    write(tmp_path / "bad" / "train.jsonl", records)
    write(tmp_path / "bad" / "valid.jsonl", conversations(3))
    with pytest.raises(DataError, match=r"train.jsonl:26: the conversation has no assistant message"):
        prepare(tmp_path / "bad", tmp_path / "cache", renderer, unit=8)
    assert [p.name for p in (tmp_path / "cache" / "prepared" / "chat").iterdir()] == []
