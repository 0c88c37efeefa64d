"""The fused LM head + loss equals the plain logits + cross-entropy path, in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import MODEL_VARIANTS, randomised
from lmtrain.model import head
from lmtrain.model.gpt import GPT, GPTConfig
from lmtrain.model.head import CPU_CHUNK_ROWS, CPU_EVAL_ROWS, head_loss, nll_sum

CFG = GPTConfig(vocab_size=1000, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=64, dropout=0.0)


def _grads(impl: str, h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss = head_loss(h, w, y, impl)  # type: ignore[arg-type]
    (loss * 3.0).backward()  # an upstream gradient other than 1 must be applied
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("rows", [7, CPU_CHUNK_ROWS + 300])  # one chunk, and several with a partial last one
def test_fused_equals_plain_in_loss_and_gradients(rows: int) -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(rows, 48, generator=g)
    w = torch.randn(3000, 48, generator=g) * 0.1
    y = torch.randint(0, 3000, (rows,), generator=g)
    y[::5] = -100  # ignored targets, spread over every chunk
    fused, plain = _grads("fused", h, w, y), _grads("plain", h, w, y)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ignored = (y == -100).nonzero()[:, 0]
    assert torch.count_nonzero(fused[1][ignored]) == 0  # ignored rows get no gradient


def test_ignore_index_is_left_out_of_the_mean() -> None:
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(10, 16, generator=g), torch.randn(50, 16, generator=g)
    y = torch.randint(0, 50, (10,), generator=g)
    masked = y.clone()
    masked[4:] = -100
    expected = F.cross_entropy(h[:4] @ w.T, y[:4])
    torch.testing.assert_close(head_loss(h, w, masked), expected, rtol=1e-6, atol=1e-6)


def test_model_gradients_match_between_the_fused_and_plain_heads() -> None:
    torch.manual_seed(0)
    fused = GPT(CFG)
    plain = GPT(CFG, loss_impl="plain")
    plain.load_state_dict(fused.state_dict())
    idx = torch.randint(0, CFG.vocab_size, (3, 33), generator=torch.Generator().manual_seed(2))
    y = idx[:, 1:].clone()
    y[1, 10:] = -100
    losses = []
    for model in (fused, plain):
        _, loss = model(idx[:, :-1], y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_fused_loss_under_bf16_autocast_is_close_to_fp32() -> None:
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(64, 32, generator=g), torch.randn(200, 32, generator=g) * 0.1
    y = torch.randint(0, 200, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head_loss(h, w, y)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, head_loss(h, w, y), rtol=2e-2, atol=2e-2)


def test_no_gradients_are_computed_without_grad_mode() -> None:
    h, w = torch.randn(8, 16, requires_grad=True), torch.randn(40, 16, requires_grad=True)
    with torch.no_grad():
        loss = head_loss(h, w, torch.randint(0, 40, (8,)))
    assert not loss.requires_grad


def test_nll_sum_matches_cross_entropy_over_several_chunks() -> None:
    g = torch.Generator().manual_seed(4)
    rows = CPU_EVAL_ROWS * 2 + 5
    h, w = torch.randn(rows, 24, generator=g), torch.randn(300, 24, generator=g) * 0.2
    y = torch.randint(0, 300, (rows,), generator=g)
    y[::3] = -100
    total, count = nll_sum(h, w, y)
    keep = y != -100
    expected = F.cross_entropy((h[keep] @ w.T).double(), y[keep], reduction="sum")
    assert count == int(keep.sum()) and total.dtype == torch.float64
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-6)


def test_evaluation_loss_without_grad_equals_the_training_loss() -> None:
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    idx = torch.randint(0, CFG.vocab_size, (2, 20), generator=torch.Generator().manual_seed(5))
    y = idx[:, 1:].clone()
    y[0, :4] = -100
    _, with_grad = model(idx[:, :-1], y)
    with torch.no_grad():
        _, without = model(idx[:, :-1], y)
    torch.testing.assert_close(without, with_grad.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [7, 300])
def test_the_fallback_for_older_torch_equals_plain(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr(head, "LinearCrossEntropyOptions", None)  # as on a torch without F.linear_cross_entropy
    monkeypatch.setattr(head, "CPU_CHUNK_ROWS", 128)
    g = torch.Generator().manual_seed(6)
    h = torch.randn(rows, 32, generator=g)
    w = torch.randn(500, 32, generator=g) * 0.1
    y = torch.randint(0, 500, (rows,), generator=g)
    y[1::4] = -100
    calls: list[int] = []
    original = head.ChunkedHeadLoss.forward

    def counted(ctx, *args):
        calls.append(1)
        return original(ctx, *args)

    monkeypatch.setattr(head.ChunkedHeadLoss, "forward", staticmethod(counted))
    fallback, plain = _grads("fused", h, w, y), _grads("plain", h, w, y)
    assert calls == [1]
    for a, b in zip(fallback, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_the_loss_of_every_position_equals_plain_cross_entropy(variant: str) -> None:
    """`CausalLM.token_losses` per row and position, against cross-entropy of the model's own logits (padding rows of
    the vocabulary left out, soft cap applied), over several chunks, with padded and ignored targets."""
    from lmtrain.model.registry import build_model

    torch.manual_seed(3)
    model = randomised(build_model(MODEL_VARIANTS[variant]), scale=0.3)
    cfg = model.config
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(0, cfg.vocab_size, (12, cfg.max_seq_len), generator=g)  # 192 rows: two CPU chunks
    y = torch.randint(0, cfg.vocab_size, idx.shape, generator=g)
    y[0, 5:] = -100  # a padded row
    y[:, 0] = -100  # ignored targets in every row
    with torch.no_grad():
        logits, _ = model(idx)  # (B, T, V)
        y[1, 3] = logits[1, 3].argmax()  # at least one target the model predicts
        scores = model.token_losses(model.hidden(idx), y)
        total, count = model.nll(model.hidden(idx), y)
    expected = F.cross_entropy(logits.transpose(1, 2).float(), y, reduction="none", ignore_index=-100)  # (B, T)
    assert scores.nll.shape == y.shape == scores.greedy.shape and scores.nll.dtype == torch.float32
    torch.testing.assert_close(scores.nll, expected, rtol=1e-5, atol=1e-5)
    greedy = (logits.argmax(-1) == y) & (y != -100)
    assert torch.equal(scores.greedy, greedy) and bool(scores.greedy[1, 3]) and not scores.greedy[0, 6:].any()
    assert count == int((y != -100).sum()) and torch.isclose(total, expected.double().sum(), rtol=1e-6)


@pytest.mark.parametrize("path", ["fused", "plain", "fallback", "softcap"])
def test_the_summed_loss_is_the_mean_times_the_count_and_zero_without_targets(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a step of conversations adds up: the summed loss and its gradients are the mean's times the number of
    trained targets, and a micro-batch with no trained target gives 0 and zero gradients, never NaN."""
    if path == "fallback":
        monkeypatch.setattr(head, "LinearCrossEntropyOptions", None)
    impl, softcap = ("plain" if path == "plain" else "fused"), (30.0 if path == "softcap" else None)
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(40, 24, generator=g), torch.randn(300, 24, generator=g) * 0.1
    y = torch.randint(0, 300, (40,), generator=g)
    y[::3] = -100
    count = int((y != -100).sum())

    def run(targets: torch.Tensor, reduction: str) -> tuple[torch.Tensor, ...]:
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        loss = head_loss(hh, ww, targets, impl, softcap=softcap, reduction=reduction)  # type: ignore[arg-type]
        (loss * 2.0).backward()
        return loss.detach(), hh.grad, ww.grad

    summed, mean = run(y, "sum"), run(y, "mean")
    for a, b in zip(summed, mean):
        torch.testing.assert_close(a, b * count, rtol=1e-5, atol=1e-5)
    empty = run(torch.full_like(y, -100), "sum")
    assert empty[0].item() == 0.0
    assert torch.count_nonzero(empty[1]) == 0 and torch.count_nonzero(empty[2]) == 0
    with torch.no_grad():
        assert head_loss(h, w, torch.full_like(y, -100), impl, reduction="sum").item() == 0.0
