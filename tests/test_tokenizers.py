"""Tokenizers beyond GPT-2: a trained byte-level BPE, any tokenizer.json, tiktoken files; uint32 ids; counts that
keep word perplexity and bits per byte exact for every tokenizer."""

from __future__ import annotations

import base64
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import GPT2, SAMPLE
from lmtrain.cli import main
from lmtrain.data.corpus import find_corpus
from lmtrain.data.datasets import DataPaths, get_dataset
from lmtrain.data.holdout import HoldoutOptions
from lmtrain.data.prepare import PrepareOptions, prepare_corpus
from lmtrain.data.tokenizers import open_tokenizer
from lmtrain.data.tokenizers.base import Tokenizer
from lmtrain.data.tokenizers.carry import carried_tokenizer, carry_tokenizer
from lmtrain.data.tokenizers.gpt2 import GPT2_PATTERN, _ranks_from_files
from lmtrain.data.tokenizers.tiktoken_file import TiktokenFileTokenizer
from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
from lmtrain.data.tokenizers.training import train_tokenizer
from lmtrain.errors import DataError

TEXT = get_dataset("text")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    """A 600-id BPE trained on the sample's train split."""
    out = tmp_path_factory.mktemp("tok") / "bpe600"
    text = (SAMPLE / "wiki.train.raw").read_text()
    return train_tokenizer(iter(text.split("\n = ")), vocab_size=600, out=out, about={}, log=lambda _: None)


def test_a_trained_tokenizer_round_trips_and_keeps_special_text_plain(trained: HFTokenizer) -> None:
    assert trained.vocab_size == 600 and trained.eot_id == 0 and trained.dtype == np.uint16
    text = "Valkyria Chronicles <|endoftext|> 日本語 🦙\n\n  tabs\tand spaces  "
    ids = trained.encode(text)
    assert trained.eot_id not in ids and trained.decode(ids) == text
    assert trained.encode_array(text).tolist() == ids == trained.encode_batch([text, "x"])[0].tolist()
    assert len(ids) < len(text.encode())  # merges were learned
    again = pickle.loads(pickle.dumps(trained))
    assert again.encode(text) == ids and again.fingerprint() == trained.fingerprint()


def test_the_cli_writes_a_folder_that_autotokenizer_loads(tmp_path: Path, capsys) -> None:
    from transformers import AutoTokenizer

    corpus = tmp_path / "corpus.jsonl"
    lines = [line for line in (SAMPLE / "wiki.train.raw").read_text().splitlines() if len(line) > 40][:300]
    corpus.write_text("".join(json.dumps({"body": line}) + "\n" for line in lines))
    out = tmp_path / "tok"
    code = main(
        [
            "tokenizer",
            "train",
            str(corpus),
            "--vocab-size",
            "600",
            "--out",
            str(out),
            "--text-field",
            "body",
            "--valid-docs",
            "10",
            "--test-docs",
            "10",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    made = json.loads((out / "lmtrain_tokenizer.json").read_text())
    assert summary["vocab_size"] == 600 and made["documents"] == 280  # the held-out documents left out
    ours = open_tokenizer(str(out), [])
    theirs = AutoTokenizer.from_pretrained(str(out))
    text = lines[0] + " and more"
    assert theirs(text)["input_ids"] == ours.encode(text) and theirs.eos_token_id == ours.eot_id
    assert main(["tokenizer", "train", str(corpus), "--vocab-size", "600", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_tiktoken_file_with_its_pattern_encodes_like_gpt2(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ranks = _ranks_from_files(GPT2)
    path = tmp_path / "mine.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    (tmp_path / "mine.json").write_text(
        json.dumps({"pat_str": GPT2_PATTERN, "special_tokens": {"<|endoftext|>": 50256}})
    )
    mine = open_tokenizer(str(path), [])
    assert isinstance(mine, TiktokenFileTokenizer) and mine.vocab_size == 50257 and mine.eot_id == 50256
    text = (SAMPLE / "wiki.valid.raw").read_text()[:20000]
    assert mine.encode(text) == tokenizer.encode(text)
    (tmp_path / "other.tiktoken").write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="unknown tiktoken encoding 'other'"):
        open_tokenizer(str(tmp_path / "other.tiktoken"), [])


def test_bad_tokenizer_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        open_tokenizer(str(tmp_path / "missing"), [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no tokenizer.json"):
        open_tokenizer(str(tmp_path / "empty"), [])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="is not a tokenizers tokenizer.json"):
        open_tokenizer(str(tmp_path / "bad.json"), [])


def test_a_checkpoint_carries_its_tokenizer(trained: HFTokenizer, tmp_path: Path) -> None:
    carry_tokenizer(trained, tmp_path / "ckpt")
    again = carried_tokenizer(tmp_path / "ckpt", trained.fingerprint(), [])
    assert again.fingerprint() == trained.fingerprint() and again.path.parent == tmp_path / "ckpt" / "tokenizer"
    changed = {**trained.fingerprint(), "tokenizer_json_sha256": "0" * 64}
    with pytest.raises(DataError, match="is not the tokenizer"):
        carried_tokenizer(tmp_path / "ckpt", changed, [])
    with pytest.raises(DataError, match="holds no tokenizer/ folder"):
        carried_tokenizer(tmp_path, trained.fingerprint(), [])


def big_vocab_tokenizer(folder: Path, size: int = 70_000) -> HFTokenizer:
    """A word-level tokenizer of `size` ids (more than uint16 holds): w0 .. w{size-2} and <|endoftext|>."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(size - 2)} | {"[UNK]": size - 2, "<|endoftext|>": size - 1}
    backend = Backend(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True)
    backend.save(str(folder / "tokenizer.json"))
    return HFTokenizer(folder / "tokenizer.json")


def test_ids_beyond_uint16_are_stored_as_uint32(tmp_path: Path) -> None:
    tok = big_vocab_tokenizer(tmp_path / "tok")
    assert tok.vocab_size == 70_000 and tok.eot_id == 69_999 and tok.dtype == np.uint32
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, words in (("train", "w1 w65535 w65536 w69997"), ("valid", "w69990 w3"), ("test", "w2")):
        (corpus / f"{split}.txt").write_text(words + "\n")
    paths = DataPaths(corpus, None, tmp_path / "cache", download=False)
    found = find_corpus(TEXT, ["train"], paths, HoldoutOptions(), log=print)
    (prepared, _) = prepare_corpus(TEXT, found, paths, tok, PrepareOptions())["train"]
    assert prepared.meta["dtype"] == "uint32"
    assert np.asarray(prepared.tokens()).tolist() == [1, 65535, 65536, 69997]


def test_word_and_byte_counts_are_the_texts_for_every_tokenizer(
    tokenizer: Tokenizer, trained: HFTokenizer, tmp_path: Path
) -> None:
    from lmtrain.eval.perplexity import perplexity_report, score_tokens
    from lmtrain.model.config import ModernConfig
    from lmtrain.model.registry import build_model

    docs = ["Héllo wörld, two lines\nsecond line here\n", "naïve café 日本\n", "end"]
    # by hand: bytes of the documents (no separators), words, lines (a last line without a newline counts)
    n_bytes = sum(len(d.encode()) for d in docs)
    assert n_bytes == 42 + 20 + 3  # é ö ï é: 2 bytes each; 日 本: 3 each
    words, lines = 7 + 3 + 1, 2 + 1 + 1
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "test.txt").write_text(docs[0] + "<|endoftext|>\n" + docs[1] + "<|endoftext|>\n" + docs[2])
    results = {}
    for tok in (tokenizer, trained):
        paths = DataPaths(corpus, None, tmp_path / "cache", download=False)
        found = find_corpus(TEXT, ["test"], paths, HoldoutOptions(), log=print)
        (prepared, _) = prepare_corpus(TEXT, found, paths, tok, PrepareOptions())["test"]
        summary = prepared.summary()
        assert summary["bytes"] == n_bytes and summary["original_tokens"] == words + lines
        assert summary["documents"] == 3
        torch.manual_seed(0)
        cfg = ModernConfig(
            vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32, max_seq_len=64, tie=False
        )
        model = build_model(cfg)  # an untied zero head: every prediction uniform, nll ln(V) per token
        scores = score_tokens(model, prepared.tokens(), context=64, stride=64, batch_size=4, eot_id=tok.eot_id)
        report = perplexity_report(
            scores, original_tokens=words + lines, n_bytes=n_bytes, context=64, stride=64, seconds=0.0
        )
        tokens = summary["tokens"]
        assert scores.tokens == tokens
        assert report.bits_per_byte == pytest.approx(tokens * math.log2(tok.vocab_size) / n_bytes, rel=1e-5)
        assert report.word_ppl == pytest.approx(math.exp(tokens * math.log(tok.vocab_size) / (words + lines)), rel=1e-4)
        results[tok.name] = tokens
    assert len(set(results.values())) == 2  # the two tokenizers cut the text differently
