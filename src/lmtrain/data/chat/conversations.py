"""Conversations in the layouts people have them in, read into one form: a tuple of (role, content) messages.

One record a conversation, in JSON lines, a `.json` array or parquet rows (`formats.py` opens and decompresses them):
- `{"messages": [{"role": ..., "content": ...}, ...]}` (OpenAI's and transformers' layout; `conversations` may hold
  the same list);
- ShareGPT's `{"conversations": [{"from": "human" | "gpt" | "system", "value": ...}, ...]}`;
- `{"prompt": ..., "completion": ...}`: two strings (a user message and the reply) or two lists of messages (TRL's
  conversational prompt-completion);
- anything else through a field mapping (`ChatFields`, `--chat-fields user=question,assistant=answer`).

Roles are `system`, `user` and `assistant`; ShareGPT's `human` and `gpt` (and `model`, `bot`) are read as theirs. A
record that fits none of these, an unknown role, content that is not a string and a conversation with no assistant
message are DataErrors that name the record (`file:line`, `file element N`, `file row N`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtrain.data.formats import CorpusFile, file_format, json_records, open_binary, open_parquet
from lmtrain.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant"}
"""ShareGPT's and other datasets' role names, read as lmtrain's."""


@dataclass(frozen=True)
class Message:
    role: str
    """One of ROLES."""
    content: str


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    where: str
    """The record it was read from (`file:line`, `file element N`, `file row N`), for messages about it."""

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages as a chat template takes them."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


@dataclass(frozen=True)
class ChatFields:
    """Which record field holds each role's single message (`--chat-fields user=question,assistant=answer`)."""

    user: str
    assistant: str
    system: str | None = None

    def __post_init__(self) -> None:
        if not self.user or not self.assistant:
            raise ConfigError("--chat-fields needs user=FIELD and assistant=FIELD (system=FIELD is optional)")

    @classmethod
    def parse(cls, text: str) -> ChatFields:
        """`user=question,assistant=answer[,system=FIELD]`, as the flag takes it."""
        pairs: dict[str, str] = {}
        for item in text.split(","):
            role, sep, field = item.partition("=")
            role, field = role.strip(), field.strip()
            if not sep or role not in ROLES or not field:
                raise ConfigError(
                    f"--chat-fields {text!r}: {item.strip()!r} is not ROLE=FIELD with ROLE one of {', '.join(ROLES)}; "
                    f"e.g. --chat-fields user=question,assistant=answer"
                )
            if role in pairs:
                raise ConfigError(f"--chat-fields {text!r} names {role} twice")
            pairs[role] = field
        if "user" not in pairs or "assistant" not in pairs:
            raise ConfigError(f"--chat-fields {text!r} needs both user=FIELD and assistant=FIELD")
        return cls(**pairs)

    def describe(self) -> str:
        system = f",system={self.system}" if self.system else ""
        return f"user={self.user},assistant={self.assistant}{system}"


def _message(item: object, index: int, where: str) -> Message:
    if not isinstance(item, Mapping):
        raise DataError(f"{where}: message {index} is a JSON {type(item).__name__}, not an object")
    if "role" in item or "content" in item:
        role, content = item.get("role"), item.get("content")
    elif "from" in item or "value" in item:
        role, content = item.get("from"), item.get("value")
    else:
        keys = ", ".join(list(item)[:6]) or "none"
        raise DataError(f"{where}: message {index} has neither role/content nor from/value (its fields: {keys})")
    role = ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise DataError(
            f"{where}: message {index} has role {role!r}; use one of {', '.join(ROLES)} "
            f"(ShareGPT's {', '.join(ALIASES)} are read too)"
        )
    if not isinstance(content, str):
        raise DataError(
            f"{where}: message {index} ({role}) has content of type {type(content).__name__}, not a string; "
            f"give each message's content as text"
        )
    return Message(role, content)


def _messages(items: object, where: str, field: str) -> list[Message]:
    if not isinstance(items, list):
        raise DataError(f"{where}: {field!r} is a JSON {type(items).__name__}, not a list of messages")
    return [_message(item, i, where) for i, item in enumerate(items)]


def _text(record: Mapping[str, Any], field: str, where: str) -> str:
    if field not in record:
        keys = ", ".join(list(record)[:8]) or "none"
        raise DataError(f"{where} has no {field!r} field (its fields: {keys}); check --chat-fields")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is a {type(value).__name__}, not a string")
    return value


def conversation(record: object, where: str, fields: ChatFields | None = None) -> Conversation:
    """The conversation of one record in any of the module's layouts; a DataError naming `where` otherwise."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where} is a JSON {type(record).__name__}, not an object holding a conversation")
    if fields is not None:
        messages = [Message("system", _text(record, fields.system, where))] if fields.system else []
        messages += [
            Message("user", _text(record, fields.user, where)),
            Message("assistant", _text(record, fields.assistant, where)),
        ]
    elif "messages" in record:
        messages = _messages(record["messages"], where, "messages")
    elif "conversations" in record:
        messages = _messages(record["conversations"], where, "conversations")
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            messages = [Message("user", prompt), Message("assistant", completion)]
        else:
            messages = _messages(prompt, where, "prompt") + _messages(completion, where, "completion")
    else:
        keys = ", ".join(list(record)[:8]) or "none"
        raise DataError(
            f"{where} holds no conversation (its fields: {keys}); give messages, ShareGPT conversations or "
            f"prompt/completion, or map fields with --chat-fields user=FIELD,assistant=FIELD"
        )
    if not any(m.role == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message, so nothing in it would be trained")
    return Conversation(tuple(messages), where)


def _parquet_records(path: Path) -> Iterator[tuple[object, str]]:
    handle = open_parquet(path)
    row = 0
    for batch in handle.iter_batches():
        for record in batch.to_pylist():
            yield record, f"{path} row {row}"
            row += 1


def read_conversations(path: Path, fields: ChatFields | None = None) -> Iterator[Conversation]:
    """Every conversation of one file (JSON lines, a JSON array or parquet, compressed or not), in file order."""
    found = file_format(path)
    if found is None or found[0] not in ("jsonl", "json", "parquet"):
        raise DataError(
            f"{path} is not a conversations file; give JSON lines (.jsonl), a JSON array (.json) or parquet, "
            f"or train on plain text with --dataset text"
        )
    fmt, compression = found
    if fmt == "parquet":
        records: Iterator[tuple[object, str]] = _parquet_records(path)
    else:
        stream, raw = open_binary(CorpusFile(path, fmt, compression))
        try:
            data = stream.read()
        finally:
            stream.close()
            raw.close()
        records = json_records(data, where=str(path))
    for record, where in records:
        yield conversation(record, where, fields)
