"""A Hugging Face `tokenizers` tokenizer read from its tokenizer.json (what `lmtrain tokenizer train` writes and what
Hugging Face model folders hold), with the end-of-document token, beginning token and chat template its
tokenizer_config.json names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmtrain.data.tokenizers.base import (
    END_MARKERS,
    EOT_TEXT,
    TURN_ENDS,
    BPEVocab,
    Tokenizer,
    file_fingerprint,
    write_json,
)
from lmtrain.data.tokenizers.byte_level import unicode_to_bytes
from lmtrain.data.tokenizers.pretokenizers import style_of
from lmtrain.errors import DATA_EXTRA, DataError

EOT_CANDIDATES = (EOT_TEXT, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")
"""End-of-document tokens looked for, in order, when tokenizer_config.json names no eos_token or names an end of turn
(`<|im_end|>` stands last: a vocabulary with no other end uses it between documents too)."""
CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
"""Where transformers 4.43 and later save a tokenizer's chat template, beside tokenizer_config.json."""


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` tokenizer from its tokenizer.json (and tokenizer_config.json beside it, if any)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path} is unreadable ({exc.strerror})") from None
        self._load(raw, _read_config(path))

    def _load(self, raw: bytes, config: Mapping[str, Any]) -> None:
        """Set the tokenizer up from tokenizer.json's bytes and tokenizer_config.json's content."""
        try:
            from tokenizers import Tokenizer as Backend
        except ModuleNotFoundError:
            raise DataError(f"--tokenizer {self.path} needs the `tokenizers` package; {DATA_EXTRA}") from None
        self._raw, self._config = raw, dict(config)
        try:
            self._spec = json.loads(raw)
            self._tok = Backend.from_str(raw.decode("utf-8"))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise DataError(f"{self.path} is not a tokenizers tokenizer.json ({str(exc)[:120]})") from None
        self._tok.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, never the id
        added = self._spec.get("added_tokens") or []
        self._specials = {t["content"]: t["id"] for t in added if t.get("special")}
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1
        named_eos = _config_token(self._config, "eos_token")
        self.eot_text = _eot_text(self.path, vocab, named_eos)
        self.eot_id = vocab[self.eot_text]
        self._eos_id = vocab[named_eos] if named_eos in vocab else self.eot_id
        bos = _config_token(self._config, "bos_token")
        self._bos_id = vocab[bos] if bos in vocab else self.eot_id
        self.name = "hf"
        self._fast = _tiktoken_path(self._spec, self.path)

    @property
    def fast(self) -> bool:
        """Whether text is encoded through tiktoken (a byte-level BPE it expresses exactly: `bpe_ranks.py`)."""
        return self._fast is not None

    @property
    def bos_id(self) -> int:
        """tokenizer_config.json's bos_token where it names one in the vocabulary, else the end-of-document token."""
        return self._bos_id

    @property
    def eos_id(self) -> int:
        """tokenizer_config.json's eos_token (SmolLM2-Instruct's and Qwen's `<|im_end|>`, Llama-3-Instruct's
        `<|eot_id|>`), else the end-of-document token."""
        return self._eos_id

    @property
    def add_bos(self) -> bool:
        """tokenizer_config.json's add_bos_token, else yes."""
        return bool(self._config.get("add_bos_token", True))

    @property
    def stop_ids(self) -> frozenset[int]:
        ends = (self.special_id(m) for m in END_MARKERS)
        return frozenset({self.eot_id} | {i for i in ends if i is not None})

    @property
    def chat_template(self) -> str | None:
        """tokenizer_config.json's chat_template (its `default` one where it holds several)."""
        template = self._config.get("chat_template")
        if isinstance(template, list):
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return template if isinstance(template, str) else None

    def __reduce__(self):
        return (_restored, (type(self), self.path, self._raw, self._config))

    def with_config(self, **keys: Any) -> HFTokenizer:
        """This tokenizer with tokenizer_config.json's `keys` replaced (a chat template); the ids are unchanged."""
        return _restored(type(self), self.path, self._raw, {**self._config, **keys})

    def special_id(self, text: str) -> int | None:
        return self._specials.get(text)

    def encode_array(self, text: str) -> np.ndarray:
        if self._fast is not None:
            encoding, normalize = self._fast
            text = normalize(text) if normalize else text
            return encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=()).astype(np.uint32)
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self._fast is not None:
            encoding, normalize = self._fast
            texts = [normalize(t) for t in texts] if normalize else list(texts)
            batch = encoding.encode_ordinary_batch(texts)
            return [np.asarray(ids, dtype=np.uint32) for ids in batch]
        encoded = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.uint32) for e in encoded]

    def encode_rendered(self, text: str) -> list[int]:
        self._tok.encode_special_tokens = False
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        finally:
            self._tok.encode_special_tokens = True

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def describe(self) -> str:
        return f"{self.path} ({self.vocab_size:,} ids, end of document {self.eot_text} = {self.eot_id})"

    def fingerprint(self) -> dict[str, object]:
        digest = hashlib.sha256(self._raw).hexdigest()
        return file_fingerprint(self, "tokenizers", eot_text=self.eot_text, tokenizer_json_sha256=digest)

    def save(self, folder: Path) -> list[str]:
        """tokenizer.json as read, and tokenizer_config.json where there is one (the chat template folded in)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_bytes(self._raw)
        if not self._config:
            return ["tokenizer.json"]
        write_json(folder / CONFIG, self._config)
        return ["tokenizer.json", CONFIG]

    def save_hf(self, folder: Path, max_len: int) -> list[str]:
        """tokenizer.json (PreTrainedTokenizerFast), its configs naming the end and beginning tokens, and the chat
        template."""
        (folder / "tokenizer.json").write_bytes(self._raw)
        bos, eos = self._tok.id_to_token(self.bos_id), self._tok.id_to_token(self.eos_id)
        special = {"bos_token": bos, "eos_token": eos}
        template = {"chat_template": self.chat_template} if self.chat_template else {}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len}
        write_json(folder / CONFIG, config | special | template)
        write_json(folder / "special_tokens_map.json", special)
        return ["tokenizer.json", CONFIG, "special_tokens_map.json"]

    def bpe_vocab(self) -> BPEVocab:
        """The BPE model's vocabulary and merges with the added tokens, and the cut llama.cpp names; a tokenizer.json
        that is not a byte-level BPE or cuts in a way llama.cpp has no name for is a DataError saying which."""
        model = self._spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("continuing_subword_prefix"):
            raise DataError(
                f"{self.path} holds a {model.get('type')} model; llama.cpp reads byte-level BPE vocabularies (a "
                f"tokenizers BPE without byte fallback or subword prefixes)"
            )
        style = style_of(self._spec)
        if style is None:
            raise DataError(
                f"{self.path} cuts text before merging ({_summary(self._spec)}) in a way llama.cpp has no "
                f"pre-tokenizer name for; llama.cpp would refuse the file or tokenize differently"
            )
        tokens: list[str | None] = [None] * self.vocab_size
        for text, i in model["vocab"].items():
            tokens[i] = text
        added = self._spec.get("added_tokens") or []
        for token in added:
            tokens[token["id"]] = token["content"]
        alphabet = set(unicode_to_bytes())
        plain = [t for i, t in enumerate(tokens) if t is not None and i not in {a["id"] for a in added}]
        if any(not set(t) <= alphabet for t in plain):
            raise DataError(f"{self.path} is not a byte-level vocabulary (tokens outside GPT-2's byte alphabet)")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return BPEVocab(
            tokens=tokens,
            special=frozenset(self._specials.values()),
            user_defined=frozenset(t["id"] for t in added if not t.get("special")),
            merges=merges,
            pre=style.name,
            ignore_merges=bool(model.get("ignore_merges", False)),
        )


class SpecTokenizer(HFTokenizer):
    """A tokenizer.json built in memory from another form (a GGUF file's vocabulary): `rebuild` makes its spec and
    config from `path` (unless they are given, `built`), and it pickles as `(class, path)`."""

    def __init__(self, path: Path, built: tuple[dict[str, Any], dict[str, Any]] | None = None) -> None:
        self.path = path
        spec, config = built if built is not None else self.rebuild(path)
        self._load(json.dumps(spec, ensure_ascii=False).encode("utf-8"), config)

    @classmethod
    def rebuild(cls, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """(tokenizer.json, tokenizer_config.json) of the tokenizer at `path`."""
        raise NotImplementedError


def _restored(kind: type[HFTokenizer], path: Path, raw: bytes, config: dict[str, Any]) -> HFTokenizer:
    """A pickled tokenizer rebuilt from what it was made of (its chat template and added tokens included)."""
    tokenizer = object.__new__(kind)
    tokenizer.path = path
    tokenizer._load(raw, config)
    return tokenizer


def _summary(spec: Mapping[str, Any]) -> str:
    """The pre-tokenizer and normalizer kinds of a tokenizer.json, for a message."""

    def kinds(part: Any) -> str:
        if not isinstance(part, Mapping):
            return "none"
        inner = part.get("pretokenizers") or part.get("normalizers")
        return part.get("type", "?") + (f"[{', '.join(kinds(p) for p in inner)}]" if inner else "")

    return f"pre-tokenizer {kinds(spec.get('pre_tokenizer'))}, normalizer {kinds(spec.get('normalizer'))}"


def _tiktoken_path(spec: Mapping[str, Any], path: Path) -> tuple[Any, Any] | None:
    """(tiktoken Encoding, normalizer) of a tokenizer.json tiktoken expresses exactly, else None (the `tokenizers`
    path)."""
    import tiktoken

    from lmtrain.data.tokenizers.bpe_ranks import tiktoken_form

    try:
        form = tiktoken_form(spec)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if form is None:
        return None
    try:
        encoding = tiktoken.Encoding(
            name=f"hf-{path.parent.name}",
            pat_str=form.pattern,
            mergeable_ranks=form.ranks,
            special_tokens=form.specials,
        )
    except ValueError:  # a regex tiktoken's engine does not take
        return None
    return encoding, form.normalize


def _read_config(path: Path) -> dict[str, Any]:
    """tokenizer_config.json beside a tokenizer.json (with chat_template.jinja's template where there is one), or {}."""
    folder = path.parent
    config: Any = {}
    if path.name == "tokenizer.json" and (folder / CONFIG).is_file():
        try:
            config = json.loads((folder / CONFIG).read_text())
        except ValueError:
            raise DataError(f"{folder / CONFIG} is not valid JSON; fix or delete it") from None
        if not isinstance(config, dict):
            raise DataError(f"{folder / CONFIG} is not a JSON object; fix or delete it")
    if path.name == "tokenizer.json" and (folder / TEMPLATE_FILE).is_file() and "chat_template" not in config:
        config["chat_template"] = (folder / TEMPLATE_FILE).read_text()
    return config


def _config_token(config: Mapping[str, Any], key: str) -> str | None:
    """The token tokenizer_config.json names under `key` (eos_token, bos_token), if any."""
    named = config.get(key)
    named = named.get("content") if isinstance(named, dict) else named
    return named if isinstance(named, str) else None


def _eot_text(path: Path, vocab: Mapping[str, int], named: str | None) -> str:
    """The end-of-document token: tokenizer_config.json's eos_token, unless it ends a chat turn (a chat model's
    eos_token is `<|im_end|>` or `<|eot_id|>`, while its pretraining documents were separated by `<|endoftext|>` or
    `<|end_of_text|>`); else the first of EOT_CANDIDATES present."""
    first = [named] if named and named not in TURN_ENDS else []
    for text in first + list(EOT_CANDIDATES) + ([named] if named else []):
        if text in vocab:
            return text
    raise DataError(
        f"{path} has no end-of-document token ({', '.join(EOT_CANDIDATES)}); add one as a special token "
        f"or name it as eos_token in tokenizer_config.json"
    )
