"""GPT-2 BPE: exact ids against tiktoken's own `gpt2` encoding and HF tokenizers; lossless round trip."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLE
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.gpt2 import EOT_ID, GPT2_FILES, GPT2Tokenizer, TokenizerSource, find_gpt2_folder, load_gpt2
from lmtrain.errors import DataError

TIKTOKEN_URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture
def tiktoken_gpt2(gpt2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tiktoken's own `gpt2` encoding, its download cache seeded offline from the mirror's files."""
    import tiktoken
    import tiktoken.registry

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    for name, url in TIKTOKEN_URLS.items():
        shutil.copy(gpt2_dir / name, cache / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "gpt2", raising=False)
    enc = tiktoken.get_encoding("gpt2")
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "gpt2", raising=False)
    return enc


def test_wikitext103_raw_test_split_matches_tiktoken_gpt2_exactly(
    tokenizer: Tokenizer, tiktoken_gpt2, wikitext103_test_raw: Path
) -> None:
    text = wikitext103_test_raw.read_text(encoding="utf-8")
    expected = tiktoken_gpt2.encode_ordinary(text)
    assert tokenizer.encode(text) == expected
    assert tokenizer.encode_array(text).tolist() == expected
    assert len(expected) == 286_221


def test_wikitext103_raw_test_split_matches_hf_tokenizers(
    tokenizer: Tokenizer, gpt2_dir: Path, wikitext103_test_raw: Path
) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(
        tokenizers.models.BPE.from_file(str(gpt2_dir / "encoder.json"), str(gpt2_dir / "vocab.bpe"))
    )
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    text = wikitext103_test_raw.read_text(encoding="utf-8")
    assert tokenizer.encode(text) == hf.encode(text).ids


@pytest.mark.parametrize(
    "text",
    [
        "Hello world",
        " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles",
        "emoji 🦙 and CJK 日本語, combining e\u0301, tabs\tand\r\nnewlines\n\n\n",
        "  leading and trailing spaces  ",
        "",
    ],
)
def test_decode_encode_round_trip(tokenizer: Tokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_round_trip_of_a_whole_split(tokenizer: Tokenizer) -> None:
    text = (SAMPLE / "wiki.valid.raw").read_text(encoding="utf-8")
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_endoftext_text_is_never_the_special_id(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a <|endoftext|> b")
    assert EOT_ID not in ids
    assert tokenizer.decode(ids) == "a <|endoftext|> b"
    assert tokenizer.decode([EOT_ID]) == "<|endoftext|>"
    assert tokenizer.eot_id == 50256 and tokenizer.vocab_size == 50257


def test_tokenizer_pickles_by_source(tokenizer: Tokenizer) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.source == tokenizer.source and clone.encode("pickle me") == tokenizer.encode("pickle me")
    assert len(pickle.dumps(tokenizer)) < 1000


def test_wrong_bpe_files_are_refused(gpt2_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "gpt2"
    bad.mkdir()
    shutil.copy(gpt2_dir / "vocab.bpe", bad / "vocab.bpe")
    (bad / "encoder.json").write_text('{"a": 0}')
    with pytest.raises(DataError, match="is not the GPT-2 release file"):
        GPT2Tokenizer(TokenizerSource(str(bad)))


def test_search_order_takes_the_first_folder_with_both_files(gpt2_dir: Path, tmp_path: Path) -> None:
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(gpt2_dir / "vocab.bpe", half / "vocab.bpe")
    assert find_gpt2_folder([tmp_path / "missing", half, gpt2_dir]) == gpt2_dir
    assert load_gpt2([half, gpt2_dir]).source.folder == str(gpt2_dir.resolve())
    assert set(GPT2_FILES) == {"encoder.json", "vocab.bpe"}


def test_missing_files_and_no_network_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmtrain.data.tokenizers.gpt2 as tok

    def offline(_source):
        raise DataError("tiktoken's download of the GPT-2 BPE failed (ConnectionError)")

    monkeypatch.setattr(tok, "_encoding", offline)
    with pytest.raises(DataError) as info:
        load_gpt2([tmp_path / "a", tmp_path / "b"])
    message = str(info.value)
    assert str(tmp_path / "a") in message and "ConnectionError" in message and "\n" not in message
