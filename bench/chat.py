"""Supervised fine-tuning on conversations, measured end to end on this machine (docs/chat.md). Each part writes its
JSON to WORK/parts/ and is skipped when that file exists; `collect` gathers them into bench/results/chat-cpu-2core.json.

  identity    SmolLM2-135M-Instruct (the GGUF of `make smollm2`) fine-tuned on FastChat's 500 identity conversations
              (10% held out): greedy replies to the held-out questions before and after, the held-out assistant loss,
              ChatCORE before and after (ARC-Easy and -Challenge 200 items each, GSM8K 100), and the fine-tuned
              model exported to GGUF (f32) and run in llama.cpp on the same prompts (same reply ids?)
  identity_answers  every held-out reply of `identity` before and after: how many name the new identity where the
              reference does
  generation  GSM8K replies decoded together with one KV cache (16 a batch) against one prompt at a time: items/s
  gsm8k       a short SFT of SmolLM2 on GSM8K's train set: test accuracy (100 items) before and after
  scratch     the modern `tiny` pretrained on the sample, then fine-tuned on the identity conversations with ChatML
              added: the share of held-out replies that end with <|im_end|>
  docmask     pretraining with document-masked attention (--doc-mask) against plain causal attention, `tiny` on the
              sample, two seeds, equal tokens

Usage: python bench/chat.py PART... [--work DIR] (PART: one of the above, all, or collect).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMTRAIN_DATA_DIR", REPO.parent / "shared" / "data"))
IDENTITY = DATA / "chat" / "fastchat" / "identity_conversations.json"
GSM8K = DATA / "chat" / "gsm8k"
MODEL = Path(os.environ.get("LMTRAIN_SMOLLM2", Path.home() / ".cache/lmtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
SFT = "--valid-fraction 0.1 --seq-len 512 --batch-size 8 --eval-every 10 --save-every 0 --sample-tokens 0"
REPLY = 64
"""Tokens an identity reply has at most."""


def lmtrain(*args: str, log: Path | None = None) -> str:
    """Run `lmtrain ARGS` (this checkout's code); its stdout; a failure stops the part with the tail of its output."""
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "LMTRAIN_DATA_DIR": str(DATA)}
    proc = subprocess.run([sys.executable, "-m", "lmtrain", *args], capture_output=True, text=True, env=env)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"lmtrain {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def held_out(run: Path) -> list[dict[str, Any]]:
    """The run's held-out conversations (valid, then test) as prepared: each one's prompt ids up to its first trained
    token, and the reply trained there (ids and text)."""
    from lmtrain.data.chat.prepare import read_chat
    from lmtrain.interop.open import open_model

    config = json.loads((run / "config.json").read_text())
    cache = Path(config["data"]["cache_dir"]) / "prepared" / "chat"
    tokenizer = open_model(run).tokenizer([])
    found = []
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        splits = read_chat(folder)
        if not splits:
            continue
        for name in [n for n in ("valid", "test") if n in splits]:
            split = splits[name]
            ids, mask, starts = split.ids(), split.mask(), split.starts()
            for s, e in zip(starts[:-1], starts[1:]):
                conv, trained = [int(t) for t in ids[s:e]], [bool(m) for m in mask[s:e]]
                first = trained.index(True)
                end = first + trained[first:].index(False) if False in trained[first:] else len(trained)
                found.append({"prompt": conv[:first], "reference": tokenizer.decode(conv[first:end])})
    return found


def replies(model_path: Path, prompts: list[list[int]], max_new: int = REPLY) -> list[dict[str, Any]]:
    """Greedy replies of the model at `model_path` to each prompt (ids): text, ids, whether it ended its turn."""
    import torch

    from lmtrain.eval.batch_generate import generate_batch
    from lmtrain.interop.open import open_model

    opened = open_model(model_path)
    model, tokenizer = opened.model(torch.device("cpu")), opened.tokenizer([])
    stops = tokenizer.stop_ids
    out = []
    for i in range(0, len(prompts), 16):
        for reply in generate_batch(model, prompts[i : i + 16], max_new, stop_ids=stops):
            text = tokenizer.decode([t for t in reply if t not in stops])
            out.append({"text": text, "ids": reply, "ended_turn": bool(reply) and reply[-1] == tokenizer.eos_id})
    return out


def chatcore(model_path: Path, work: Path, tag: str) -> dict[str, Any]:
    """ARC-Easy and -Challenge as chat questions (200 items each) and GSM8K (100): accuracy, centred, ChatCORE."""
    scores: dict[str, Any] = {}
    for tasks, cap in (("arc_easy_chat,arc_challenge_chat", "200"), ("gsm8k", "100")):
        items = work / f"chatcore-{tag}-{tasks.split(',')[0]}.jsonl"
        report = json.loads(
            lmtrain(
                "eval", str(model_path), "--tasks", tasks, "--max-per-task", cap, "--json", "--items-out", str(items)
            )
        )
        scores |= report["tasks"]
    centred = [t["centred"] for t in scores.values()]
    return {
        "tasks": scores,
        "chatcore": sum(centred) / len(centred),
        "items": {k: v["items"] for k, v in scores.items()},
    }


def part_identity(work: Path) -> dict[str, Any]:
    data = work / "identity-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "identity_conversations.json").write_bytes(IDENTITY.read_bytes())
    run = work / "identity-run"
    t0 = time.perf_counter()
    if not (run / "checkpoints" / "latest").exists():
        flags = f"train --init-from {MODEL} --dataset chat --data-dir {data} --max-steps 40 {SFT} --out {run}"
        lmtrain(*flags.split(), "--cache-dir", str(work / "identity-cache"), log=work / "identity-train.log")
    train_s = time.perf_counter() - t0
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [(e["step"], e["val_loss"]) for e in evals if e["event"] == "eval"]
    cases = held_out(run)
    prompts = [c["prompt"] for c in cases]
    before, after = replies(MODEL, prompts), replies(run, prompts)
    gguf = work / "identity-sft.f32.gguf"
    if not gguf.exists():
        lmtrain("export", str(run), "--format", "gguf", "--dtype", "f32", "--out", str(gguf))
    from lmtrain.interop.open import open_model

    theirs = llama_cpp_replies(gguf, prompts, set(open_model(run).tokenizer([]).stop_ids))
    named = re.compile(r"vicuna", re.IGNORECASE)
    return {
        "train_seconds": round(train_s, 1),
        "held_out_conversations": len(cases),
        "held_out_loss": losses,
        "says_vicuna_before": sum(bool(named.search(b["text"])) for b in before),
        "says_vicuna_after": sum(bool(named.search(a["text"])) for a in after),
        "llama_cpp_same_reply_ids": sum(a["ids"] == t for a, t in zip(after, theirs)),
        "examples": [
            {"question_ids": len(c["prompt"]), "reference": c["reference"], "before": b["text"], "after": a["text"]}
            for c, b, a in list(zip(cases, before, after))[:8]
        ],
        "chatcore_before": chatcore(MODEL, work, "before"),
        "chatcore_after": chatcore(run, work, "after"),
    }


def part_identity_answers(work: Path) -> dict[str, Any]:
    """Every held-out reply of `identity` before and after, and how many name the new identity (Vicuna or LMSYS)
    where the held-out reference does."""
    run = work / "identity-run"
    cases = held_out(run)
    prompts = [c["prompt"] for c in cases]
    before, after = replies(MODEL, prompts), replies(run, prompts)
    named = re.compile(r"vicuna|lmsys", re.IGNORECASE)
    asked = [i for i, c in enumerate(cases) if named.search(c["reference"])]
    return {
        "held_out_conversations": len(cases),
        "reference_names_identity": len(asked),
        "named_before": sum(bool(named.search(before[i]["text"])) for i in asked),
        "named_after": sum(bool(named.search(after[i]["text"])) for i in asked),
        "ended_turn_after": sum(a["ended_turn"] for a in after),
        "cases": [
            {"reference": c["reference"], "before": b["text"], "after": a["text"]}
            for c, b, a in zip(cases, before, after)
        ],
    }


def llama_cpp_replies(gguf: Path, prompts: list[list[int]], stops: set[int], max_new: int = REPLY) -> list[list[int]]:
    """llama.cpp's greedy reply ids to each prompt (the same prompt ids), up to and including a stop id."""
    from lmtrain.bench.llama_cpp import greedy, llama

    with llama(gguf, n_ctx=1024, threads=2) as ref:
        return [greedy(ref, prompt, max_new, stop_ids=stops)[len(prompt) :] for prompt in prompts]


def part_generation(work: Path) -> dict[str, Any]:
    import torch

    from lmtrain.data.chat.render import ChatRenderer
    from lmtrain.eval.batch_generate import generate_batch
    from lmtrain.eval.generate import generate
    from lmtrain.interop.open import open_model
    from lmtrain.tasks.chat import by_length, chat_prompts
    from lmtrain.tasks.spec import chat_table

    opened = open_model(MODEL)
    model, tokenizer = opened.model(torch.device("cpu")), opened.tokenizer([])
    items = [json.loads(line) for line in (GSM8K / "test.jsonl").read_text().splitlines()[:16]]
    prompts = chat_prompts(ChatRenderer(tokenizer), chat_table().tasks["gsm8k"], items, model.config.max_seq_len)
    stops, new = tokenizer.stop_ids, 256
    t0 = time.perf_counter()
    batched: dict[int, list[int]] = {}
    for chunk in by_length(prompts, 16):  # as ChatCORE batches them
        for i, reply in zip(chunk, generate_batch(model, [prompts[i] for i in chunk], new, stop_ids=stops)):
            batched[i] = reply
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = []
    for p in prompts:
        ids = generate(model, torch.tensor([p]), new, temperature=0, stop_ids=stops)[0, len(p) :].tolist()
        ends = [j for j, t in enumerate(ids) if t in stops]
        alone.append(ids[: ends[0] + 1] if ends else ids)
    alone_s = time.perf_counter() - t0
    same = sum(batched[i] == alone[i] for i in range(len(prompts)))
    return {
        "items": len(prompts),
        "batch": 16,
        "reply_tokens": new,
        "new_tokens": sum(len(r) for r in alone),
        "batched_items_per_s": round(len(prompts) / batched_s, 3),
        "one_at_a_time_items_per_s": round(len(prompts) / alone_s, 3),
        "speedup": round(alone_s / batched_s, 2),
        "same_replies": same,
    }


def part_gsm8k(work: Path) -> dict[str, Any]:
    data = work / "gsm8k-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_bytes((GSM8K / "train.jsonl").read_bytes())
    run = work / "gsm8k-run"
    if not (run / "checkpoints" / "latest").exists():
        rows = SFT.replace("--seq-len 512 --batch-size 8", "--seq-len 1024 --batch-size 4")  # 6 solutions pass 513
        rows = rows.replace("--valid-fraction 0.1", "--valid-fraction 0.02").replace(
            "--eval-every 10", "--eval-every 20"
        )
        flags = f"train --init-from {MODEL} --dataset chat --data-dir {data} --max-steps 20 {rows} --out {run}"
        flags += " --chat-fields user=question,assistant=answer"
        lmtrain(*flags.split(), "--cache-dir", str(work / "gsm8k-cache"), log=work / "gsm8k-train.log")
    result = {}
    for tag, path in (("before", MODEL), ("after", run)):
        report = json.loads(lmtrain("eval", str(path), "--tasks", "gsm8k", "--max-per-task", "100", "--json"))
        result[tag] = report["tasks"]["gsm8k"]
    return result | {"steps": 20, "tokens_per_step": 4 * 1024}


def part_scratch(work: Path) -> dict[str, Any]:
    pre = work / "scratch-pretrain"
    if not (pre / "checkpoints" / "latest").exists():
        flags = "train --preset tiny --dataset sample --max-steps 120 --batch-size 8 --seq-len 256 --eval-every 0"
        flags += f" --save-every 0 --sample-tokens 0 --out {pre} --cache-dir {work / 'scratch-cache'}"
        lmtrain(*flags.split(), log=work / "scratch-pretrain.log")
    data = work / "identity-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "identity_conversations.json").write_bytes(IDENTITY.read_bytes())
    run = work / "scratch-sft"
    if not (run / "checkpoints" / "latest").exists():
        flags = f"train --init-from {pre} --dataset chat --data-dir {data} --chat-template chatml --max-steps 60"
        flags += f" --lr 1e-3 {SFT.replace('--seq-len 512', '--seq-len 256')} --out {run}"
        lmtrain(*flags.split(), "--cache-dir", str(work / "scratch-cache"), log=work / "scratch-sft.log")
    cases = held_out(run)
    got = replies(run, [c["prompt"] for c in cases])
    return {
        "held_out_replies": len(got),
        "ended_turn": sum(r["ended_turn"] for r in got),
        "share_ended_turn": round(sum(r["ended_turn"] for r in got) / len(got), 4),
        "examples": [{"reference": c["reference"], "reply": r["text"]} for c, r in list(zip(cases, got))[:6]],
    }


def part_docmask(work: Path) -> dict[str, Any]:
    """`tiny` (its context widened to 1,024, so that windows cross documents) on the sample with and without
    --doc-mask, seeds 1 and 2, at equal tokens: final validation loss (each scored as it trains: the doc-masked run
    attends within documents there too)."""
    result: dict[str, Any] = {}
    for mask in ("--doc-mask", "--no-doc-mask"):
        for seed in (1, 2):
            run = work / f"docmask{mask[1:].replace('-', '')}-{seed}"
            if not (run / "metrics.jsonl").exists() or "end" not in (run / "metrics.jsonl").read_text():
                flags = f"train --preset tiny --max-seq-len 1024 --dataset sample --max-steps 120 --batch-size 2 {mask}"
                flags += f" --seed {seed} --eval-every 120 --save-every 0 --sample-tokens 0 --out {run}"
                lmtrain(*flags.split(), "--cache-dir", str(work / "scratch-cache"), log=work / f"{run.name}.log")
            evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            result.setdefault(mask, {})[seed] = [e["val_loss"] for e in evals if e["event"] == "eval"][-1]
    means = {m: sum(v.values()) / len(v) for m, v in result.items()}
    return {"val_loss": result, "mean": means, "doc_mask_minus_causal": means["--doc-mask"] - means["--no-doc-mask"]}


PARTS = {
    "generation": part_generation,
    "identity": part_identity,
    "identity_answers": part_identity_answers,
    "scratch": part_scratch,
    "docmask": part_docmask,
    "gsm8k": part_gsm8k,
}


def collect(work: Path) -> None:
    from lmtrain.bench import provenance
    from lmtrain.bench.parts import collected

    out = REPO / "bench" / "results" / "chat-cpu-2core.json"
    out.write_text(json.dumps({"bench": "chat", **collected(PARTS, work), "provenance": provenance()}, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=[*PARTS, "all", "collect"])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-chat")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from lmtrain.bench.parts import run_parts

    run_parts(PARTS, list(PARTS) if "all" in args.parts else [p for p in args.parts if p != "collect"], args.work)
    if "collect" in args.parts or "all" in args.parts:
        collect(args.work)


if __name__ == "__main__":
    main()
