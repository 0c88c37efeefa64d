"""`lmtrain generate`: argument parsing and output; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_inference_options, check_sampling, inference_model, log, print_json
from lmtrain.errors import ConfigError

ABOUT = """`lmtrain generate`: sample text from a model (a run or checkpoint folder, a transformers folder or a GGUF
file) with a KV cache.

Sampling stops at the end-of-document token (and, for a chat model, at its end-of-turn and end-of-text tokens), after
--max-new-tokens, or when prompt plus new tokens reach the model's max_seq_len: the model has no positions beyond it,
so generation ends there (the output says `stopped: context limit`). Temperature 0 is greedy decoding; the same
--seed gives the same text. With --chat the prompt is one user message rendered with the model's own chat template
(after --system's message, where given), and the reply is what is printed.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="sample text from a model (run, checkpoint, transformers folder or GGUF file)",
        description=ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="MODEL",
        help="run folder (its best), checkpoint, transformers folder or GGUF file",
    )
    p.add_argument("--prompt", default="", help="text to continue (default: none, start after <|endoftext|>)")
    p.add_argument("--chat", action="store_true", help="send --prompt as a user message through the chat template")
    p.add_argument("--system", help="with --chat: a system message before it")
    p.add_argument("--max-new-tokens", type=int, default=100, help="tokens to add at most (default 100)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None, help="sample from the smallest set with this probability mass")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    p.add_argument("--num-samples", type=int, default=1, help="independent samples of the same prompt (default 1)")
    add_inference_options(p)
    add_data_options(p, dataset=False)
    p.add_argument("--json", action="store_true", help="print the samples as JSON")
    p.set_defaults(handler=run)


def _check(args: argparse.Namespace) -> None:
    check_sampling(args)
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples {args.num_samples} must be at least 1")
    if args.system is not None and not args.chat:
        raise ConfigError("--system goes with --chat: it is a message of the conversation")


def run(args: argparse.Namespace) -> int:
    import torch

    from lmtrain.eval.generate import generate
    from lmtrain.runtime import autocast, select_dtype

    _check(args)
    model, tokenizer, device = inference_model(args)
    if args.chat:
        from lmtrain.data.chat.render import ChatRenderer

        system = [{"role": "system", "content": args.system}] if args.system is not None else []
        ids = ChatRenderer(tokenizer).prompt([*system, {"role": "user", "content": args.prompt}])
    else:
        ids = tokenizer.encode(args.prompt) or [tokenizer.bos_id]
    limit = model.config.max_seq_len
    if len(ids) >= limit:
        raise ConfigError(
            f"the prompt is {len(ids)} tokens; the model's context is {limit}, which leaves no room to generate; "
            f"shorten the prompt"
        )
    prompt = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with autocast(device, select_dtype(args.dtype, device)):
        out = generate(
            model,
            prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stop_ids=tokenizer.stop_ids,
            generator=generator,
        )
    samples = []
    for row in out.tolist():
        new = row[len(ids) :]
        ends = [i for i, t in enumerate(new) if t in tokenizer.stop_ids]
        if ends:
            stop = "end of turn" if args.chat else "endoftext"
            new = new[: ends[0]]
        elif len(row) >= limit and len(new) < args.max_new_tokens:
            stop = "context limit"
        else:
            stop = "max new tokens"
        samples.append(
            {"prompt": args.prompt, "completion": tokenizer.decode(new), "new_tokens": len(new), "stop": stop}
        )
    if any(s["stop"] == "context limit" for s in samples):
        log(f"note: generation stops at the model's context of {limit} tokens (prompt + new tokens)")
    if args.json:
        print_json(samples)
        return 0
    for i, sample in enumerate(samples, 1):
        print(f"--- sample {i} ({sample['new_tokens']} new tokens, stopped: {sample['stop']}) ---")
        print(sample["completion"] if args.chat else sample["prompt"] + sample["completion"])
    return 0
