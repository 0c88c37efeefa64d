"""A run on an own corpus with an own tokenizer, end to end: a JSONL pool with held-out splits, a trained BPE, train,
doctor, eval, generate, export (AutoTokenizer loads the run's tokenizer), and a resume whose tokenizer grew."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLE
from lmtrain.cli import main


@pytest.mark.slow
def test_own_corpus_and_tokenizer_end_to_end(tmp_path: Path, capsys) -> None:
    articles = (SAMPLE / "wiki.train.raw").read_text().split("\n = ")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    half = len(articles) // 2
    for name, part in (("a.jsonl", articles[:half]), ("b.jsonl.gz", articles[half:])):
        lines = "".join(json.dumps({"content": a}) + "\n" for a in part)
        if name.endswith(".gz"):
            import gzip

            (corpus / name).write_bytes(gzip.compress(lines.encode()))
        else:
            (corpus / name).write_text(lines)
    tok = tmp_path / "tok"
    split = ["--text-field", "content", "--valid-docs", "3", "--test-docs", "3"]
    assert main(["tokenizer", "train", str(corpus), "--vocab-size", "2048", "--out", str(tok), *split]) == 0
    cache = ["--cache-dir", os.environ["LMTRAIN_CACHE_DIR"]]  # the test's own, with the session's measured peak
    run = tmp_path / "run"
    train = ["train", "--preset", "micro", "--dataset", "text", "--data-dir", str(corpus), "--tokenizer", str(tok)]
    train += [*split, *cache, "--out", str(run), "--max-steps", "6", "--batch-size", "4", "--seq-len", "64"]
    train += ["--warmup", "1", "--eval-every", "3", "--eval-windows", "4", "--sample-tokens", "0", "--log-every", "3"]
    assert main(train) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["vocab_size"] == 2048 and config["data"]["tokenizer"] == str(tok)
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (ckpt / "tokenizer" / "tokenizer.json").is_file()
    capsys.readouterr()

    assert main(["eval", str(run), "--split", "test", "--json", *cache]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] > 0 and 0 < report["bits_per_byte"] < 12

    shutil.move(str(tok), str(tmp_path / "tok-moved"))  # the checkpoint carries its own copy
    assert main(["generate", str(run), "--prompt", "The", "--max-new-tokens", "5", "--json", *cache]) == 0
    assert json.loads(capsys.readouterr().out)[0]["new_tokens"] >= 0

    from transformers import AutoTokenizer

    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0
    hf_tok = AutoTokenizer.from_pretrained(str(out))
    from lmtrain.data.tokenizers import open_tokenizer

    ours = open_tokenizer(str(ckpt / "tokenizer"), [])
    assert hf_tok("The history of the team")["input_ids"] == ours.encode("The history of the team")
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == ours.eot_id == 0
    capsys.readouterr()

    bigger = ["tokenizer", "train", str(corpus), "--vocab-size", "4096", "--out", str(tok), *split]
    assert main(bigger) == 0
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--max-steps", "8", *cache])
    err = capsys.readouterr().err
    assert code == 2 and "has 4,096 ids, more than the model's vocab_size=2,048" in err and "Traceback" not in err
