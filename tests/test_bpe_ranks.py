"""The tiktoken path of tokenizer.json tokenizers (`data/tokenizers/bpe_ranks.py`): byte-level BPEs in GPT-2's,
Llama-3's and Qwen2's pre-tokenizer styles give the same ids through tiktoken as through `tokenizers`, on the sample
and on text of another kind (this repository's documentation and code); what tiktoken cannot express stays on the
`tokenizers` path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SAMPLE
from lmtrain.bench.tokenizer_styles import STYLES, slow_copy, train_style
from lmtrain.data.tokenizers.bpe_ranks import tiktoken_form
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer

tokenizers = pytest.importorskip("tokenizers")
REPO = Path(__file__).resolve().parents[1]


def _texts() -> dict[str, list[str]]:
    wiki = (SAMPLE / "wiki.valid.raw").read_text().split("\n \n")
    other = [p.read_text() for p in sorted((REPO / "docs").glob("*.md"))]
    other += [p.read_text() for p in sorted((REPO / "src" / "lmtrain" / "data").rglob("*.py"))]
    other += ["Ünïcödé café naïve e\u0301 (decomposed), 数字 12345, emoji 🙂, tabs\t\tand\r\nCRLF", ""]
    return {"sample": wiki, "docs and code": other}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    texts = (SAMPLE / "wiki.train.raw").read_text().split("\n \n")
    base = tmp_path_factory.mktemp("styles")
    return {style: train_style(style, texts, base / style, vocab_size=2000) for style in STYLES}


@pytest.mark.parametrize("style", STYLES)
def test_the_tiktoken_path_gives_the_ids_of_tokenizers(style: str, trained: dict[str, Path]) -> None:
    tok = HFTokenizer(trained[style] / "tokenizer.json")
    assert tok.fast
    reference = tokenizers.Tokenizer.from_file(str(trained[style] / "tokenizer.json"))
    reference.encode_special_tokens = True
    for name, texts in _texts().items():
        ours = [a.tolist() for a in tok.encode_batch(texts)]
        theirs = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
        assert ours == theirs, (style, name)
        assert tok.encode_array(texts[0]).tolist() == theirs[0]
    special = "text with <|endoftext|> and <|im_start|> inside"  # special-token strings are text, never their ids
    assert tok.encode(special) == reference.encode(special, add_special_tokens=False).ids
    assert tok.eot_id not in tok.encode(special)


def test_what_tiktoken_cannot_express_keeps_the_tokenizers_path(trained: dict[str, Path], tmp_path: Path) -> None:
    slow = HFTokenizer(slow_copy(trained["gpt2"], tmp_path / "slow") / "tokenizer.json")
    fast = HFTokenizer(trained["gpt2"] / "tokenizer.json")
    assert not slow.fast
    texts = _texts()["sample"][:50]
    assert [a.tolist() for a in slow.encode_batch(texts)] == [a.tolist() for a in fast.encode_batch(texts)]
    spec = json.loads((trained["gpt2"] / "tokenizer.json").read_text())
    merges = spec["model"]["merges"]
    swapped = spec | {"model": spec["model"] | {"merges": [merges[1], merges[0], *merges[2:]]}}
    assert tiktoken_form(swapped) is None  # merge order no longer id order
    assert tiktoken_form(spec | {"normalizer": {"type": "Lowercase"}}) is None
    assert tiktoken_form(spec | {"model": spec["model"] | {"byte_fallback": True}}) is None
    assert tiktoken_form(spec | {"pre_tokenizer": {"type": "Whitespace"}}) is None
    assert tiktoken_form(spec) is not None
