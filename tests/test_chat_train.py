"""Training on conversations (`--dataset chat`, `train/feed.py`): a step's loss is the mean over the step's trained
targets however the batch is split into micro-batches (the sum over trained tokens divided by the step's count),
equal to each conversation scored alone; a run trains and validates on held-out conversations; chat flags and data
that do not fit are one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chat_helpers import chat_folder
from conftest import read_jsonl
from gguf_helpers import cli
from lmtrain.config import build_run_config
from lmtrain.data.datasets import DataPaths
from lmtrain.train.data import load_training_data
from lmtrain.train.parts import build_training

pytest.importorskip("tokenizers")

MODEL = ("--preset", "micro", "--d-model", "32", "--n-head", "2", "--n-layer", "1", "--max-seq-len", "64")
MODEL += ("--vocab-size", "50304")


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return chat_folder(tmp_path_factory.mktemp("chat"))


def run_config(data: Path, tok: Path, **keys):
    flat = {"preset": "micro", "d_model": 32, "n_head": 2, "n_layer": 1, "max_seq_len": 64, "vocab_size": 50304}
    flat |= {"dataset": "chat", "data_dir": str(data), "tokenizer": str(tok), "batch_size": 4, "optimizer": "adamw"}
    flat |= {"lr": 1e-3, "warmup": 1, "save_every": 0, "sample_tokens": 0}
    return build_run_config(flat | keys)


def test_a_steps_loss_is_the_mean_over_its_trained_targets_however_it_is_split(chat_data, tmp_path: Path) -> None:
    data_dir, tok = chat_data
    paths = DataPaths(data_dir, None, tmp_path / "cache", download=False)
    results = []
    for micro in (4, 1):  # one micro-batch of 4 rows, or four of 1 (as many rows, different counts in each)
        cfg = run_config(data_dir, tok, micro_batch_size=micro)
        data = load_training_data(cfg, paths, log=lambda _: None)
        torch.manual_seed(0)
        step = build_training(cfg, feed=data.feed(cfg), device=torch.device("cpu"), dtype="fp32")
        feed, model = step.feed, step.model
        rows = feed.sampler.batch_rows(0)
        expected, count = 0.0, 0
        with torch.no_grad():  # each conversation of the step's rows alone
            for row in rows:
                for piece in feed.train.rows[row]:
                    s, e = feed.train.pieces[piece]
                    ids = np.asarray(feed.train.ids[s:e], dtype=np.int64)
                    mask = np.asarray(feed.train.mask[s + 1 : e]).astype(bool)
                    y = torch.from_numpy(np.where(mask, ids[1:], -100))[None]
                    nll = model.token_losses(model.hidden(torch.from_numpy(ids[:-1])[None]), y).nll
                    expected += float(nll.sum())
                    count += int(mask.sum())
        result = step(0)
        results.append((float(result.loss), [p.detach().clone() for p in model.parameters()]))
        assert float(result.loss) == pytest.approx(expected / count, rel=1e-5)
    (loss_a, params_a), (loss_b, params_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # the same update


def test_a_run_on_conversations_learns_and_validates_on_held_out_ones(chat_data, tmp_path: Path) -> None:
    data_dir, tok = chat_data
    out = tmp_path / "run"
    code, _, err = cli(
        "train",
        *MODEL,
        "--dataset",
        "chat",
        "--data-dir",
        str(data_dir),
        "--tokenizer",
        str(tok),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--max-steps",
        "22",
        "--eval-every",
        "11",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-2",
        "--warmup",
        "1",
        "--log-every",
        "1",
        "--sample-tokens",
        "0",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 0, err
    records = read_jsonl(out / "metrics.jsonl")
    evals = [r["val_loss"] for r in records if r["event"] == "eval"]
    assert len(evals) == 2 and evals[-1] < evals[0] < np.log(50304) - 1.0, evals  # ln V: where it starts
    steps = [r["loss"] for r in records if r["event"] == "step"]
    assert steps[-1] < steps[0] and all(np.isfinite(steps))
    # the run says which share of its tokens the loss trains: the replies' own count over every token computed
    paths = DataPaths(data_dir, None, tmp_path / "cache", download=False)
    data = load_training_data(run_config(data_dir, tok), paths, log=lambda _: None)
    mask = np.asarray(data.chat[0].mask, dtype=bool)
    share = records[0]["trained_share"]
    assert records[0]["event"] == "start" and share == pytest.approx(mask.sum() / mask.size) and 0.1 < share < 0.9
    assert cli("report", str(out))[0] == 0
    page = (out / "report.html").read_text()
    assert f"{share:.1%} of them trained" in page and "validation loss (held-out conversations, their replies" in page


def one_step(data_dir: Path, tok: Path, tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    """`lmtrain train` of one step on `data_dir` with the chat tokenizer, into tmp_path/run."""
    out, cache = str(tmp_path / "run"), str(tmp_path / "cache")
    return cli(
        "train",
        *MODEL,
        "--data-dir",
        str(data_dir),
        "--tokenizer",
        str(tok),
        "--out",
        out,
        "--cache-dir",
        cache,
        "--max-steps",
        "1",
        *extra,
    )


@pytest.mark.parametrize(
    "extra, says",
    [
        (("--dataset", "text", "--chat-fields", "user=q,assistant=a"), "chat_fields goes with --dataset chat"),
        (("--dataset", "chat", "--chat-fields", "user=q"), "needs both user=FIELD and assistant=FIELD"),
        (("--dataset", "chat", "--chat-template", "missing.jinja"), "--chat-template"),
        (("--dataset", "chat", "--max-seq-len", "16"), "longer than --seq-len 16 + 1"),
        (("--dataset", "chat", "--tokenizer", "gpt2"), "has no chat template; give one with --chat-template FILE, or"),
    ],
)
def test_chat_mistakes_are_one_line_errors(chat_data, extra: tuple[str, ...], says: str, tmp_path: Path) -> None:
    data_dir, tok = chat_data
    code, _, err = one_step(data_dir, tok, tmp_path, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert not (tmp_path / "run").exists()


def test_plain_text_given_as_conversations_is_refused(tmp_path: Path, chat_data) -> None:
    _, tok = chat_data
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("Just text.\n" * 50)
    code, _, err = one_step(tmp_path / "text", tok, tmp_path, "--dataset", "chat")
    assert code == 2 and "is plain text, not conversations; train on it with --dataset text" in err, err
    code, _, err = one_step(chat_data[0], tok, tmp_path, "--dataset", "text")  # and conversations as text
    assert code == 2 and "(its fields: messages); these are conversations: train on them with --dataset chat" in err
    assert not (tmp_path / "run").exists()


def test_the_doctor_reports_how_conversations_are_packed_and_trained(chat_data, tmp_path: Path) -> None:
    data_dir, tok = chat_data
    code, out, err = cli(
        "doctor",
        *MODEL,
        "--dataset",
        "chat",
        "--data-dir",
        str(data_dir),
        "--tokenizer",
        str(tok),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    stats = report["conversations"]
    assert stats["conversations"] == 120 and stats["pieces"] == 120 and 0 < stats["trained"] < stats["filled"] <= 1
    assert stats["end_of_turn_trained"] == 120 + 30  # one per reply: 120 first replies, 30 second ones
    found = next(f for f in report["findings"] if f["code"] == "context")
    assert found["level"] == "OK" and "120 training conversations packed into" in found["message"]
    assert report["documents"] is None


def test_a_run_that_never_trains_the_end_of_turn_token_is_warned_about() -> None:
    from lmtrain.doctor.chat_rules import ConversationStats, conversations_finding

    stats = ConversationStats(
        conversations=10, pieces=12, rows=3, seq_len=64, filled=0.9, trained=0.3, end_of_turn_trained=0
    )
    finding = conversations_finding(stats)
    assert finding.level == "WARN" and "no end-of-turn token is ever trained" in finding.message
    assert "split into 2 more pieces" in finding.message
    assert conversations_finding(dataclasses.replace(stats, end_of_turn_trained=5)).level == "OK"


def test_prepare_sends_conversations_to_train(chat_data, tmp_path: Path) -> None:
    data_dir, _ = chat_data
    cache = tmp_path / "cache"
    code, _, err = cli("prepare", "--dataset", "chat", "--data-dir", str(data_dir), "--cache-dir", str(cache))
    assert code == 2 and "conversations are prepared by `lmtrain train --dataset chat`" in err, err
    assert not cache.exists()


@pytest.mark.slow
def test_a_model_without_a_template_learns_chatml_and_every_export_renders_it(
    trained_modern_run: Path, chat_data, tmp_path: Path
) -> None:
    """--chat-template chatml on a GPT-2-tokenizer model: ChatML's two tokens are added after id 50256, the embedding
    and the untied head grow with rows starting at the mean of the others, and the run's checkpoints, `chat` and the
    transformers export all render with ChatML, `<|im_end|>` as eos while documents still end with <|endoftext|>."""
    transformers = pytest.importorskip("transformers")
    from lmtrain.data.chat.render import ChatRenderer
    from lmtrain.data.chat.tokenizer import CHATML
    from lmtrain.interop.open import open_model
    from lmtrain.train.init_from import grow_vocabulary, open_start

    start = open_start(trained_modern_run)
    grown = grow_vocabulary(start, vocab_size=50259, added=range(50257, 50259))
    tables = 0
    for name, tensor in start.weights.items():
        new = grown.weights[name]
        if tensor.shape[0] != 50304:  # not the embedding or the head: as it was
            assert torch.equal(new, tensor)
            continue
        tables += 1
        assert new.shape == tensor.shape and grown.model.padded_vocab == 50304  # 50,259 ids fit the rows padded to 64
        assert torch.equal(new[:50257], tensor[:50257]) and not new[50259:].any()
        assert torch.allclose(new[50257], tensor[:50257].mean(0)) and torch.equal(new[50258], new[50257])
    assert tables == 2  # the embedding and the untied head
    data_dir, _ = chat_data
    out = tmp_path / "run"
    flags = f"--dataset chat --data-dir {data_dir} --chat-template chatml --out {out} --cache-dir {tmp_path / 'c'}"
    flags += " --max-steps 3 --batch-size 4 --max-seq-len 64 --eval-every 0 --sample-tokens 0"
    code, _, err = cli("train", "--init-from", str(trained_modern_run), *flags.split())
    assert code == 0, err
    opened = open_model(out)
    tok = opened.tokenizer([])
    assert opened.config.vocab_size == 50259 == tok.vocab_size and tok.chat_template == CHATML
    assert (tok.eot_id, tok.eos_id, tok.special_id("<|im_start|>")) == (50256, 50258, 50257)
    code, reply, err = cli("chat", str(out), "--message", "Hi", "--temperature", "0", "--max-new-tokens", "3")
    assert code == 0 and reply.strip(), err
    code, _, err = cli("export", str(out), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert code == 0, err
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    messages = [{"role": "user", "content": "Who are you?"}]
    prompt = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert prompt["input_ids"] == ChatRenderer(tok).prompt(messages) and theirs.eos_token == "<|im_end|>"
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 50258


@pytest.mark.slow
def test_a_chat_run_resumes_exactly_after_kill_9(chat_data, tmp_path: Path) -> None:
    """Killed (as the out-of-memory killer kills) after its first checkpoint, a run on conversations resumes from it
    and takes the steps after it exactly as the run that was never killed: the same rows, the same losses."""
    import subprocess
    import sys

    from conftest import kill_9_once_saved, step_losses

    data_dir, tok = chat_data
    args = [*MODEL, "--dataset", "chat", "--data-dir", str(data_dir), "--tokenizer", str(tok), "--batch-size", "4"]
    args += ["--max-steps", "10", "--save-every", "3", "--eval-every", "3", "--optimizer", "adamw", "--lr", "1e-2"]
    args += ["--warmup", "1", "--log-every", "1", "--sample-tokens", "0", "--cache-dir", str(tmp_path / "cache")]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli("train", *args, "--out", str(whole))[0] == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmtrain", "train", *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_9_once_saved(proc, killed / "checkpoints" / "step_0000003")
    code, _, err = cli("train", "--resume", str(killed), "--sample-tokens", "0")
    assert code == 0, err
    assert dict(step_losses(killed)) == dict(step_losses(whole)) and len(step_losses(whole)) == 10
