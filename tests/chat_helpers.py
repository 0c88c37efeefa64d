"""A small chat tokenizer for tests: GPT-2's BPE as a tokenizer.json with ChatML's special tokens and a template."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import GPT2

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat_tokenizer(folder: Path, template: str = CHATML) -> Path:
    """GPT-2's BPE as a tokenizer.json with ChatML's two special tokens and `template` (a transformers folder)."""
    from tokenizers import Tokenizer
    from tokenizers.decoders import ByteLevel as ByteLevelDecoder
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import ByteLevel

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(BPE.from_file(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe")))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = ByteLevelDecoder()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|endoftext|>", "add_bos_token": False, "chat_template": template}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def chats(count: int, offset: int = 0) -> list[dict]:
    """`count` small conversations in the messages layout, one in four with a second exchange."""
    out = []
    for i in range(offset, offset + count):
        messages = [{"role": "user", "content": f"Name {i}?"}, {"role": "assistant", "content": f"I am bot {i % 5}."}]
        if i % 4 == 0:
            messages += [{"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Bot " * (i % 9)}]
        out.append({"messages": messages})
    return out


def chat_folder(root: Path) -> tuple[Path, Path]:
    """(data folder of train/valid/test conversations, the chat tokenizer's tokenizer.json) under `root`."""
    tok = chat_tokenizer(root / "tok")
    for split, records in (("train", chats(120)), ("valid", chats(12, offset=500)), ("test", chats(4, offset=900))):
        (root / "data" / f"{split}.jsonl").parent.mkdir(exist_ok=True)
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root / "data", tok / "tokenizer.json"


def chat_checkpoint(root: Path, cfg):  # noqa: ANN001, ANN201 - a ModelConfig; (model, tokenizer, checkpoint)
    """A randomised model of `cfg` with the chat tokenizer, written as a checkpoint under `root`."""
    import torch

    from conftest import randomised
    from lmtrain.checkpoint import model_state, write_checkpoint
    from lmtrain.data.tokenizers.tokenizer_json import HFTokenizer
    from lmtrain.model.registry import build_model, model_to_dict

    tok = HFTokenizer(chat_tokenizer(root / "tok") / "tokenizer.json")
    torch.manual_seed(0)
    model = randomised(build_model(cfg), scale=0.3).eval()
    config = {"model": model_to_dict(cfg), "tokenizer": tok.fingerprint()}
    return model, tok, write_checkpoint(root / "ckpt", model_state(model), config, tokenizer=tok)
