"""torch.compile changes speed, not results: a compiled model trains to the same losses as the eager one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import MODEL_VARIANTS
from lmtrain.distributed.world import World
from lmtrain.model.registry import build_model
from lmtrain.train.optim import build_optimizer
from lmtrain.train.parallel import wrap_model

CONFIGS = {name: dataclasses.replace(cfg, vocab_size=512, max_seq_len=32) for name, cfg in MODEL_VARIANTS.items()}


def _losses(compile: bool, variant: str = "gpt2", steps: int = 4, optimizer: str = "adamw") -> list[float]:
    torch.manual_seed(0)
    cfg = CONFIGS[variant]
    model = build_model(cfg)
    runner = wrap_model(model, World(), "ddp", compile)
    opt = build_optimizer(
        model, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"), kind=optimizer
    )
    batch = torch.randint(0, cfg.vocab_size, (4, 33), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(steps):  # the same batch: the loss must fall
        _, loss = runner(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant,optimizer", [("gpt2", "adamw"), ("modern", "muon"), ("modern-swiglu-gqa-untied-padded-capped", "adamw")]
)
def test_compiled_and_eager_training_give_the_same_losses(variant: str, optimizer: str) -> None:
    eager, compiled = _losses(False, variant, optimizer=optimizer), _losses(True, variant, optimizer=optimizer)
    assert eager[-1] < eager[0]  # it trains
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-4)
