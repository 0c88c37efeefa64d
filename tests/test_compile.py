"""torch.compile changes speed, not results: a compiled model trains to the same losses as the eager one."""

from __future__ import annotations

import pytest
import torch

from lmtrain.model.gpt import GPT, GPTConfig
from lmtrain.train.distributed import World, wrap_model
from lmtrain.train.optim import build_optimizer

CFG = GPTConfig(vocab_size=512, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=32, dropout=0.0)


def _losses(compile: bool, steps: int = 4) -> list[float]:
    torch.manual_seed(0)
    model = GPT(CFG)
    runner = wrap_model(model, World(), "ddp", compile)
    opt = build_optimizer(model, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"))
    batch = torch.randint(0, CFG.vocab_size, (4, 33), generator=torch.Generator().manual_seed(1))
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
def test_compiled_and_eager_training_give_the_same_losses() -> None:
    eager, compiled = _losses(False), _losses(True)
    assert eager[-1] < eager[0]  # it trains
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-4)
