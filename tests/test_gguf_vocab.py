"""A tokenizer's GGUF form (`data/tokenizers/gguf_vocab.py`, `pretokenizers.py`) without llama.cpp: each cut llama.cpp
names is recognised in a tokenizer.json and rebuilt from its name, a vocabulary written as GGUF fields reads back as a
tokenizer giving the same ids (on the tiktoken path where it was on it), padding ids become unused `[PAD{i}]` tokens,
and what llama.cpp would cut differently is refused. The same against llama.cpp itself: `test_gguf_llama_cpp.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import GPT2, SAMPLE
from lmtrain.bench.gguf_variants import TEXTS
from lmtrain.bench.tokenizer_styles import STYLES, train_style
from lmtrain.data.chat.render import ChatRenderer
from lmtrain.data.chat.template import render_chat
from lmtrain.data.tokenizers.gguf_vocab import CONTROL, UNUSED, tokenizer_fields, tokenizer_files
from lmtrain.data.tokenizers.gpt2 import load_gpt2
from lmtrain.data.tokenizers.pretokenizers import named, style_of
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer, SpecTokenizer
from lmtrain.errors import DataError

pytest.importorskip("tokenizers")
CUTS = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2"}


class Rebuilt(SpecTokenizer):
    """A tokenizer rebuilt from GGUF fields kept in memory (as GGUFTokenizer rebuilds one from a file)."""

    FIELDS: dict = {}

    @classmethod
    def rebuild(cls, path: Path):
        return tokenizer_files(cls.FIELDS, path)


def _through_gguf(tokenizer, vocab_size: int | None = None) -> HFTokenizer:
    fields = tokenizer_fields(
        tokenizer.bpe_vocab(),
        vocab_size=vocab_size or tokenizer.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eot_id,
        add_bos=tokenizer.add_bos,
        chat_template=tokenizer.chat_template,
    )
    return Rebuilt(Path("memory.gguf"), built=tokenizer_files(fields, Path("memory.gguf")))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    texts = (SAMPLE / "wiki.train.raw").read_text().split("\n \n")
    base = tmp_path_factory.mktemp("styles")
    return {style: train_style(style, texts, base / style, vocab_size=1500) for style in STYLES}


def test_gpt2_bpe_through_its_gguf_fields_gives_its_ids() -> None:
    gpt2 = load_gpt2([GPT2])
    back = _through_gguf(gpt2)
    assert back.fast and (back.eot_id, back.bos_id, back.vocab_size) == (50256, 50256, 50257)
    text = (SAMPLE / "wiki.valid.raw").read_text()
    assert back.encode(text) == gpt2.encode(text)
    for t in TEXTS:
        assert back.encode(t) == gpt2.encode(t) and back.encode_rendered(t) == gpt2.encode_rendered(t)


def test_padding_ids_are_unused_pad_tokens_that_never_come_out() -> None:
    gpt2 = load_gpt2([GPT2])
    fields = tokenizer_fields(
        gpt2.bpe_vocab(), vocab_size=50304, bos_id=50256, eos_id=50256, add_bos=True, chat_template=None
    )
    assert len(fields["tokenizer.ggml.tokens"]) == 50304
    assert fields["tokenizer.ggml.tokens"][50257:] == [f"[PAD{i}]" for i in range(50257, 50304)]
    assert set(fields["tokenizer.ggml.token_type"][50257:]) == {UNUSED}
    assert fields["tokenizer.ggml.token_type"][50256] == CONTROL
    back = Rebuilt(Path("m.gguf"), built=tokenizer_files(fields, Path("m.gguf")))
    assert back.vocab_size == 50257 and back.encode("[PAD50300]") == gpt2.encode("[PAD50300]")


@pytest.mark.parametrize("style", STYLES)
def test_each_cut_is_named_as_llama_cpp_names_it_and_rebuilt_from_the_name(style: str, trained: dict) -> None:
    tok = HFTokenizer(trained[style] / "tokenizer.json")
    spec = json.loads((trained[style] / "tokenizer.json").read_text())
    assert style_of(spec) is named(CUTS[style])
    if named(CUTS[style]).ignore_merges != bool(spec["model"].get("ignore_merges")):
        with pytest.raises(DataError, match="ignore_merges"):
            _through_gguf(tok)
        return
    back = _through_gguf(tok)
    assert back.fast == tok.fast
    text = (SAMPLE / "wiki.valid.raw").read_text()[:20000]
    assert back.encode(text) == tok.encode(text)
    assert all(back.encode(t) == tok.encode(t) for t in TEXTS)


def test_cuts_llama_cpp_has_no_name_for_are_refused(trained: dict, tmp_path: Path) -> None:
    spec = json.loads((trained["gpt2"] / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match="pre-tokenizer Whitespace, normalizer none"):
        HFTokenizer(tmp_path / "tokenizer.json").bpe_vocab()
    with pytest.raises(DataError, match="unknown pre-tokenizer 'tekken'"):
        named("tekken")
    with pytest.raises(DataError, match="carries a 'llama' tokenizer"):
        tokenizer_files({"tokenizer.ggml.model": "llama"}, tmp_path / "sentencepiece.gguf")


def test_a_chat_template_renders_as_transformers_renders_it_and_stops_at_end_of_turn(trained: dict, tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    folder = tmp_path / "chat"
    folder.mkdir()
    spec = json.loads((trained["gpt2"] / "tokenizer.json").read_text())
    spec["added_tokens"].append({**spec["added_tokens"][-1], "id": 1500, "content": "<|im_end|>"})
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": template}))
    tok = HFTokenizer(folder / "tokenizer.json")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    text = render_chat(template, messages, add_generation_prompt=True)
    assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = ChatRenderer(tok).prompt(messages)
    assert ids[0] == tok.encode_rendered("<|im_start|>")[0] and 1500 in ids  # special tokens stand for their ids
    assert tok.stop_ids == {tok.eot_id, 1500}
    assert _through_gguf(tok).chat_template == template
    with pytest.raises(DataError, match="has no chat template"):
        ChatRenderer(load_gpt2([GPT2])).prompt(messages)
