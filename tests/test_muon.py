"""Muon for the block matrices, AdamW for the rest: the update, the groups, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import step_losses, train_args
from lmtrain.cli import main
from lmtrain.model.gpt import GPT, GPTConfig
from lmtrain.train.muon import MuonAdamW, newton_schulz
from lmtrain.train.optim import build_optimizer

CFG = GPTConfig(vocab_size=300, n_layer=2, n_head=2, d_model=32, d_ff=128, max_seq_len=32, dropout=0.0)


def _reference_ns(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The quintic iteration X <- aX + (bA + cA^2)X, A = XX^T, in float64, from X = G / ||G||_F (wide side first)."""
    a, b, c = 3.4445, -4.775, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = (x.T if tall else x) / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_newton_schulz_in_fp32_equals_the_reference(shape: tuple[int, int]) -> None:
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g)
    assert out.dtype == torch.float32 and out.shape == g.shape
    torch.testing.assert_close(out, _reference_ns(g), rtol=1e-4, atol=1e-4)
    singular = torch.linalg.svdvals(out)
    assert singular.max() < 1.3 and singular.min() > 0.5  # roughly orthogonal, as the iteration intends


def test_one_muon_step_is_momentum_then_newton_schulz_then_the_scaled_update() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(48, 16))
    before = w.detach().clone()
    opt = MuonAdamW([{"params": [w], "muon": True}], lr=0.02, weight_decay=0.1)
    w.grad = torch.randn(48, 16)
    opt.step()
    nesterov = w.grad.lerp(w.grad * 0.05, 0.95)  # buffer = 0.05 g after one step; update = lerp(g, buffer, 0.95)
    expected = before * (1 - 0.02 * 0.1) - 0.02 * (48 / 16) ** 0.5 * _reference_ns(nesterov)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-5)


def _after_same_gradients(ours, theirs, shape: tuple[int, int], steps: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Two copies of one random matrix, after `steps` steps of each optimizer factory on the same gradients."""
    torch.manual_seed(seed)
    a = torch.nn.Parameter(torch.randn(*shape))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a, opt_b = ours(a), theirs(b)
    for i in range(steps):
        grad = torch.randn(*shape, generator=torch.Generator().manual_seed(i))
        a.grad, b.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
    return a.detach(), b.detach()


def test_the_muon_update_equals_torch_optim_muon_with_its_bf16_iteration() -> None:
    ours, theirs = _after_same_gradients(
        lambda p: MuonAdamW([{"params": [p], "muon": True}], lr=0.01, weight_decay=0.1, ns_dtype=torch.bfloat16),
        lambda p: torch.optim.Muon([p], lr=0.01, weight_decay=0.1),
        (32, 20),
        steps=3,
        seed=1,
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_the_adamw_groups_equal_torch_adamw() -> None:
    ours, theirs = _after_same_gradients(
        lambda p: MuonAdamW([{"params": [p]}], lr=0.01, weight_decay=0.1, betas=(0.9, 0.95)),
        lambda p: torch.optim.AdamW([p], lr=0.01, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8),
        (10, 6),
        steps=4,
        seed=2,
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_muon_takes_the_block_matrices_and_adamw_the_rest() -> None:
    model = GPT(CFG)
    opt = build_optimizer(
        model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"), kind="muon", muon_lr=6e-3
    )
    names = {id(p): n for n, p in model.named_parameters()}
    muon, embeddings, vectors = ([names[id(p)] for p in g["params"]] for g in opt.param_groups)
    assert sorted(muon) == sorted(
        n for n in names.values() if n.startswith("transformer.h.") and "weight" in n and "ln_" not in n
    )
    assert sorted(embeddings) == ["transformer.wpe.weight", "transformer.wte.weight"]
    assert all(n.endswith("bias") or ".ln_" in n for n in vectors)
    assert [g["lr_scale"] for g in opt.param_groups] == [6.0, 1.0, 1.0]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.1, 0.0]


def test_a_resumed_muon_run_equals_a_straight_one(sample_dir: Path, tmp_path: Path, capsys) -> None:
    common = ("--max-steps", "8", "--eval-every", "0", "--save-every", "0", "--optimizer", "muon", "--muon-lr", "5e-3")
    assert main(train_args(sample_dir, tmp_path / "straight", *common)) == 0
    assert main(train_args(sample_dir, tmp_path / "split", *common, "--stop-at", "4")) == 0
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    capsys.readouterr()
    straight = step_losses(tmp_path / "straight")
    assert [s for s, _ in straight] == list(range(1, 9))
    assert step_losses(tmp_path / "split") == straight
    assert main(["train", "--resume", str(tmp_path / "split"), "--optimizer", "adamw", "--max-steps", "9"]) == 2
    assert "a resumed run keeps its optimizer" in capsys.readouterr().err


def test_a_stack_of_matrices_is_orthogonalised_matrix_by_matrix() -> None:
    stack = torch.randn(3, 40, 24, generator=torch.Generator().manual_seed(3))
    batched = newton_schulz(stack)
    for g, out in zip(stack, batched):
        torch.testing.assert_close(out, newton_schulz(g), rtol=1e-5, atol=1e-5)
