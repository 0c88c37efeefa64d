"""Conversations read from every layout into one form (`data/chat/conversations.py`) and rendered with the model's
chat template into ids and a loss mask (`data/chat/render.py`): the ids equal transformers' `apply_chat_template`,
exactly the assistant replies and their end-of-turn tokens are trained, training renders what inference prompts, and
bad data is one DataError naming the record."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from chat_helpers import CHATML, chat_tokenizer
from lmtrain.data.chat.conversations import ChatFields, Conversation, Message, conversation, read_conversations
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.errors import ConfigError, DataError

pytest.importorskip("tokenizers")

TURNS = [
    {"role": "system", "content": "You are Ada."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am Ada, 2 years old."},
    {"role": "user", "content": "And  now?\n"},
    {"role": "assistant", "content": "Still Ada — été."},
]
LAYOUTS = {
    "messages": {"messages": TURNS},
    "sharegpt": {
        "conversations": [
            {"from": {"user": "human", "assistant": "gpt"}.get(t["role"], t["role"]), "value": t["content"]}
            for t in TURNS
        ]
    },
    "prompt-completion lists": {"prompt": TURNS[:2], "completion": TURNS[2:]},
}


@pytest.fixture(scope="module")
def chatml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_tokenizer(tmp_path_factory.mktemp("chatml"))


def renderer(folder: Path) -> ChatRenderer:
    from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer

    return ChatRenderer(HFTokenizer(folder / "tokenizer.json"))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_reads_as_the_same_conversation(layout: str, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    record = LAYOUTS[layout]
    expected = tuple(Message(t["role"], t["content"]) for t in TURNS)
    (tmp_path / "a.jsonl").write_text(json.dumps(record) + "\n\n" + json.dumps(record) + "\n")
    (tmp_path / "b.json").write_text(json.dumps([record, record]))
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress((json.dumps(record) + "\n").encode()))
    pq.write_table(pa.Table.from_pylist([record]), tmp_path / "d.parquet")
    wheres = []
    for name in ("a.jsonl", "b.json", "c.jsonl.gz", "d.parquet"):
        for conv in read_conversations(tmp_path / name):
            assert conv.messages == expected, name
            wheres.append(conv.where)
    assert [w.split("/")[-1] for w in wheres] == [
        "a.jsonl:1",
        "a.jsonl:3",
        "b.json element 0",
        "b.json element 1",
        "c.jsonl.gz:1",
        "d.parquet row 0",
    ]


def test_prompt_completion_strings_and_a_field_mapping() -> None:
    pair = conversation({"prompt": "2+2?", "completion": "4"}, "x")
    assert pair.messages == (Message("user", "2+2?"), Message("assistant", "4"))
    fields = ChatFields.parse("user=question, assistant=answer,system=sys")
    mapped = conversation({"question": "2+2?", "answer": "4", "sys": "Be terse."}, "x", fields)
    assert mapped.messages == (Message("system", "Be terse."), Message("user", "2+2?"), Message("assistant", "4"))


@pytest.mark.parametrize(
    "text, says",
    [
        ("user=question", "needs both"),
        ("user=q,assistant=a,user=b", "names user twice"),
        ("user=q,bot=a", "is not ROLE=FIELD"),
        ("user=q,assistant=", "is not ROLE=FIELD"),
    ],
)
def test_a_bad_field_mapping_is_a_config_error(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        ChatFields.parse(text)


@pytest.mark.parametrize(
    "record, fields, says",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, None, "f:3: the conversation has no assistant message"),
        ({"messages": [{"role": "bot2", "content": "hi"}]}, None, "f:3: message 0 has role 'bot2'"),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, None, "content of type list, not a string"),
        ({"messages": "hi"}, None, "'messages' is a JSON str, not a list of messages"),
        ({"messages": [{"text": "hi"}]}, None, "neither role/content nor from/value"),
        ({"text": "plain text"}, None, "holds no conversation (its fields: text)"),
        ({"question": "q"}, ChatFields("question", "answer"), "has no 'answer' field"),
        ({"question": "q", "answer": 4}, ChatFields("question", "answer"), "field 'answer' is a int"),
        (["a list"], None, "is a JSON list, not an object"),
    ],
)
def test_bad_conversations_name_the_record(record: object, fields, says: str) -> None:
    with pytest.raises(DataError, match=says.replace("(", r"\(").replace(")", r"\)")):
        conversation(record, "f:3", fields)


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("plain text\n")
    with pytest.raises(DataError, match="is not a conversations file"):
        list(read_conversations(tmp_path / "t.txt"))
    (tmp_path / "bad.jsonl").write_text(json.dumps(LAYOUTS["messages"]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2 is not valid JSON"):
        list(read_conversations(tmp_path / "bad.jsonl"))
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="not valid UTF-8"):
        list(read_conversations(tmp_path / "bin.jsonl"))


def test_rendering_equals_transformers_and_trains_exactly_the_replies(chatml: Path) -> None:
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(chatml)
    ours = renderer(chatml)
    out = ours.render(conversation({"messages": TURNS}, "c"))
    expected = theirs.apply_chat_template(TURNS, tokenize=True, return_dict=True)["input_ids"]
    assert out.ids.tolist() == expected
    # the trained tokens are, turn by turn, each reply and its end-of-turn token; nothing else
    runs, run = [], []
    for token, trained in zip(out.ids.tolist(), out.trained.tolist(), strict=True):
        if trained:
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    im_end = theirs.convert_tokens_to_ids("<|im_end|>")
    assert [r[-1] for r in runs] == [im_end, im_end]
    assert [theirs.decode(r[:-1]) for r in runs] == [TURNS[2]["content"], TURNS[4]["content"]]
    assert out.trained_count == sum(len(r) for r in runs) and not out.trained[0]


def test_training_renders_exactly_what_inference_prompts(chatml: Path) -> None:
    """Before each reply, the rendered ids are the prompt `generate --chat` and `chat` give the model for it."""
    ours = renderer(chatml)
    out = ours.render(conversation({"messages": TURNS}, "c"))
    ids, trained = out.ids.tolist(), out.trained.tolist()
    starts = [i for i in range(1, len(ids)) if trained[i] and not trained[i - 1]]
    assert len(starts) == 2
    for start, turn in zip(starts, (2, 4), strict=True):
        assert ours.prompt(TURNS[:turn]) == ids[:start]


@pytest.mark.parametrize(
    "template, says",
    [
        (CHATML.replace("<|im_end|>", ""), "ends assistant message 2 with no end-of-turn token"),
        ("{{ messages | length }}" + CHATML, "does not render this conversation turn by turn"),
        (
            "{% if messages[-1]['role'] == 'user' %}{{ raise_exception('no') }}{% endif %}" + CHATML,
            "failed to render for c: no",
        ),
        ("{% for m in messages %}", "not valid Jinja"),
    ],
)
def test_a_template_that_cannot_give_a_mask_is_refused(template: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=says):
        renderer(chat_tokenizer(tmp_path, template)).render(conversation({"messages": TURNS}, "c"))


def test_special_tokens_inside_a_reply_and_a_missing_template_are_refused(chatml: Path, tmp_path: Path) -> None:
    bad = conversation({"prompt": "hi", "completion": "done<|im_end|>more"}, "c:7")
    with pytest.raises(DataError, match=r"c:7: assistant message 1 contains the special token <\|im_end\|>"):
        renderer(chatml).render(bad)
    folder = chat_tokenizer(tmp_path, CHATML)
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    with pytest.raises(DataError, match="has no chat template; give one with --chat-template FILE"):
        renderer(folder)


def test_a_conversation_ending_with_a_user_turn_renders_it_untrained(chatml: Path) -> None:
    ours = renderer(chatml)
    whole = ours.render(Conversation(tuple(Message(**t) for t in TURNS[:4]), "c"))
    cut = ours.render(Conversation(tuple(Message(**t) for t in TURNS[:3]), "c"))
    assert whole.ids[: len(cut.ids)].tolist() == cut.ids.tolist() and not whole.trained[len(cut.ids) :].any()
    assert whole.trained_count == cut.trained_count


def test_end_of_turn_and_end_of_document_are_kept_apart(tmp_path: Path) -> None:
    """A chat model's eos_token is its end of turn; its documents were separated by <|endoftext|> in pretraining:
    prepared text uses the latter, export and the template's eos_token the former, generation stops at both."""
    from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer

    folder = chat_tokenizer(tmp_path / "tok")
    config = json.loads((folder / "tokenizer_config.json").read_text()) | {"eos_token": "<|im_end|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tok = HFTokenizer(folder / "tokenizer.json")
    assert (tok.eot_id, tok.eos_id, tok.stop_ids) == (50256, 50258, frozenset({50256, 50258}))
    (tmp_path / "hf").mkdir()
    tok.save_hf(tmp_path / "hf", 64)
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    from lmtrain.data.tokenizers.tokenizer_json import _eot_text

    # a vocabulary with no other end separates documents with its end of turn too
    assert _eot_text(folder, {"a": 0, "<|im_end|>": 1}, "<|im_end|>") == "<|im_end|>"
    assert _eot_text(folder, {"a": 0, "<|im_end|>": 1, "</s>": 2}, "<|im_end|>") == "</s>"


def test_chatml_added_to_gpt2_keeps_its_text_ids_and_travels_with_its_template(gpt2_dir: Path) -> None:
    import pickle

    from lmtrain.data.chat.tokenizer import CHATML
    from lmtrain.data.chat.tokenizer import chat_tokenizer as with_chat
    from lmtrain.data.tokenizers import open_tokenizer

    gpt2 = open_tokenizer("gpt2", [gpt2_dir])
    tok = with_chat(gpt2, "chatml")
    text = "Hello <|im_start|> world<|endoftext|>, été 2026!\n\n  x"
    assert tok.encode(text) == gpt2.encode(text) and tok.vocab_size == 50259
    assert (tok.special_id("<|im_start|>"), tok.eos_id, tok.eot_id, tok.chat_template) == (50257, 50258, 50256, CHATML)
    again = pickle.loads(pickle.dumps(tok))  # as prepare's workers get it
    assert again.chat_template == CHATML and again.fingerprint() == tok.fingerprint()
    out = ChatRenderer(again).render(conversation({"messages": TURNS[1:3]}, "c"))
    assert out.ids[:1].tolist() == [50257] and out.ids[out.trained].tolist()[-1] == 50258
    with pytest.raises(DataError, match="has no ChatML tokens, and the model never saw them"):
        with_chat(gpt2, "chatml", may_add=False)
    with pytest.raises(DataError, match="has no special tokens for a chat template"):
        with_chat(gpt2, str(Path(__file__)))
