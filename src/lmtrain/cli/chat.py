"""`lmtrain chat`: argument parsing and the terminal loop; `ABOUT` is what `--help` says the command does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmtrain.cli.common import add_data_options, add_inference_options, check_sampling, inference_model
from lmtrain.errors import DataError

ABOUT = """`lmtrain chat`: talk with a model (a run or checkpoint folder, a transformers folder or a GGUF file) through its
own chat template, several turns, the KV cache kept across them, each reply streamed as it is sampled.

In the terminal: type a message; /clear starts again, /system TEXT sets the system message (and starts again), /exit
(or Ctrl-D) ends. A reply stops at the model's end-of-turn or end-of-text token, after --max-new-tokens, or at the
model's context. For scripts: --message TEXT prints the reply to one message and exits; without a terminal on stdin,
each line of stdin is a conversation as JSON ({"messages": [...]}, ending with a user message) and each reply is
printed as a JSON line ({"reply", "new_tokens", "stop"}).
"""

COMMANDS = ("/clear", "/system", "/exit")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat",
        help="talk with a model through its chat template (run, checkpoint, transformers folder or GGUF file)",
        description=ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="MODEL",
        help="run folder (its best), checkpoint, transformers folder or GGUF file",
    )
    p.add_argument("--message", help="print the reply to this one user message and exit")
    p.add_argument("--system", help="the system message (default: none, or what the template adds)")
    p.add_argument(
        "--chat-template",
        metavar="FILE|chatml",
        help="a file holding the Jinja chat template, or chatml for a model with ChatML's tokens (default: the "
        "model's)",
    )
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens a reply has at most (default 512)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 is greedy (default 0.7)")
    p.add_argument("--top-p", type=float, default=0.9, help="sample from the smallest set with this mass (default 0.9)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    add_inference_options(p)
    add_data_options(p, dataset=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lmtrain.data.chat.render import ChatRenderer
    from lmtrain.data.chat.tokenizer import chat_tokenizer, check_template_choice
    from lmtrain.eval.chat_session import ChatSession
    from lmtrain.eval.generate import Sampling
    from lmtrain.runtime import autocast, select_dtype

    check_sampling(args)
    check_template_choice(args.chat_template)  # before the model is read
    model, tokenizer, device = inference_model(args)
    renderer = ChatRenderer(chat_tokenizer(tokenizer, args.chat_template, may_add=False))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    sampling = Sampling(temperature=args.temperature, top_k=None, top_p=args.top_p, generator=generator)
    session = ChatSession(model, renderer, sampling=sampling, max_new_tokens=args.max_new_tokens, system=args.system)
    with autocast(device, select_dtype(args.dtype, device)):  # --dtype, as for generate
        if args.message is not None:
            print(session.reply(args.message).text)
            return 0
        return _lines(session) if not sys.stdin.isatty() else _interactive(session)


def _lines(session) -> int:  # noqa: ANN001 - a ChatSession
    """One reply per JSON line of stdin, each a conversation ending with a user message."""
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = record["messages"]
            *history, last = messages
            if last.get("role") != "user" or not isinstance(last.get("content"), str):
                raise ValueError("the last message is not a user message with text")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"stdin line {number} is not a conversation ending with a user message ({exc}); give "
                f'{{"messages": [..., {{"role": "user", "content": "..."}}]}}'
            ) from None
        session.messages = list(history)
        reply = session.reply(last["content"])
        print(json.dumps({"reply": reply.text, "new_tokens": reply.new_tokens, "stop": reply.stop}))
        sys.stdout.flush()
    return 0


def _interactive(session) -> int:  # noqa: ANN001 - a ChatSession
    print("lmtrain chat: /clear starts again, /system TEXT sets the system message, /exit ends", file=sys.stderr)
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        command, _, rest = text.strip().partition(" ")
        if command == "/exit":
            return 0
        if command == "/clear":
            session.clear()
            continue
        if command == "/system":
            session.clear(system=rest.strip())
            continue
        if command.startswith("/") and command not in COMMANDS:
            print(f"unknown command {command}; use {', '.join(COMMANDS)}", file=sys.stderr)
            continue
        if not text.strip():
            continue
        print("model> ", end="", flush=True)
        reply = session.reply(text, on_text=lambda piece: print(piece, end="", flush=True))
        note = "" if reply.stop == "end of turn" else f"  [stopped: {reply.stop}]"
        print(note)
