"""The modern block: rotary positions, zero-initialised projections and head, the padded vocabulary, soft-capped
logits, grouped-query attention and the parameter roles the optimizers use."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import MODEL_VARIANTS, randomised
from lmtrain.model.config import ModernConfig
from lmtrain.model.head import head_loss
from lmtrain.model.modern import Modern
from lmtrain.model.registry import build_model
from lmtrain.model.rope import inv_frequencies, rotary, rotate
from lmtrain.train.optim import build_optimizer

CFG = MODEL_VARIANTS["modern"]
EVERYTHING = MODEL_VARIANTS["modern-swiglu-gqa-untied-padded-capped"]


def _model(cfg: ModernConfig = CFG, seed: int = 0) -> Modern:
    torch.manual_seed(seed)
    return build_model(cfg).eval()


INV_FREQ = inv_frequencies(ModernConfig(vocab_size=8, n_layer=1, n_head=1, d_model=16, d_ff=32))


def test_rotary_scores_depend_only_on_the_distance_between_positions() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(m: int, n: int) -> float:
        cos, sin = rotary(torch.tensor([m, n]), INV_FREQ)
        return float((rotate(q, cos[:1], sin[:1]) * rotate(k, cos[1:], sin[1:])).sum())

    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    cos, sin = rotary(torch.tensor([0]), INV_FREQ)
    torch.testing.assert_close(rotate(q, cos, sin), q)  # position 0 is not rotated


def test_every_block_starts_as_the_identity_and_an_untied_head_at_zero() -> None:
    cfg = dataclasses.replace(CFG, tie=False)
    model = _model(cfg)
    for block in model.layers:
        assert torch.count_nonzero(block.attn.proj.weight) == 0 and torch.count_nonzero(block.mlp.proj.weight) == 0
    assert torch.count_nonzero(model.head.weight) == 0
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        _, loss = model(idx[:, :-1], idx[:, 1:])
        torch.testing.assert_close(model.hidden(idx), model.norm(model.embed(idx)))  # the blocks add nothing yet
    assert loss.item() == pytest.approx(math.log(cfg.vocab_size), abs=1e-6)  # uniform: exactly ln(V)


def test_tied_and_untied_heads() -> None:
    tied, untied = _model(CFG), _model(dataclasses.replace(CFG, tie=False))
    assert tied.head is None and tied.output_weight is tied.embed.weight
    assert untied.output_weight is untied.head.weight and untied.head.weight is not untied.embed.weight
    names = [n for n, _ in tied.named_parameters()]
    assert not any(n.startswith("head") for n in names)


def test_the_padded_rows_never_enter_a_softmax_and_never_learn() -> None:
    torch.manual_seed(0)
    padded = randomised(build_model(dataclasses.replace(CFG, pad_vocab_to=64)))  # 97 -> 128 rows
    plain = build_model(CFG).eval()
    assert padded.embed.weight.shape == (128, 32)
    with torch.no_grad():
        padded.embed.weight[97:] = 1e4  # would dominate any softmax they entered
        state = {k: (v[:97] if k == "embed.weight" else v) for k, v in padded.state_dict().items()}
    plain.load_state_dict(state)
    idx = torch.randint(0, 97, (2, 16))
    for impl in ("fused", "plain"):
        padded.loss_impl = plain.loss_impl = impl
        padded.train()
        _, loss = padded(idx[:, :-1], idx[:, 1:])
        loss.backward()
        _, expected = plain(idx[:, :-1], idx[:, 1:])
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
        assert torch.count_nonzero(padded.embed.weight.grad[97:]) == 0
        padded.zero_grad()
    with torch.no_grad():
        logits, _ = padded.eval()(idx)
        total, count = padded.nll(padded.hidden(idx[:, :-1]), idx[:, 1:])
    assert logits.shape[-1] == 97  # nothing to sample beyond the vocabulary
    assert total.item() / count == pytest.approx(expected.item(), rel=1e-5)


def test_soft_capped_logits_stay_inside_the_cap_and_the_fused_loss_equals_the_plain_one() -> None:
    cfg = dataclasses.replace(CFG, logit_softcap=2.0)
    model = randomised(_model(cfg), scale=0.5)
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        logits, _ = model(idx)
    assert logits.abs().max() < 2.0 and logits.abs().max() > 1.0
    h = model.hidden(idx[:, :-1]).detach()
    grads = []
    for impl in ("fused", "plain"):
        hh, w = h.clone().requires_grad_(), model.output_weight.detach().clone().requires_grad_()
        loss = head_loss(hh, w, idx[:, 1:], impl, vocab=97, softcap=2.0)
        loss.backward()
        grads.append((loss.detach(), hh.grad, w.grad))
    for fused, plain in zip(*grads):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


def test_grouped_query_attention_shares_key_value_heads() -> None:
    model = _model(EVERYTHING)
    attn = model.layers[0].attn
    assert attn.qkv.weight.shape == ((4 + 2 * 2) * 8, 32)  # 4 query heads, 2 key/value heads of 8 dimensions
    assert model.new_cache(batch_size=3).k.shape == (2, 3, 2, 16, 8)


def test_muon_takes_the_block_matrices_and_adamw_the_embedding_the_head_and_the_norms() -> None:
    model = _model(EVERYTHING)
    opt = build_optimizer(
        model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"), kind="muon", muon_lr=6e-3
    )
    names = {id(p): n for n, p in model.named_parameters()}
    muon, embeddings, vectors = ([names[id(p)] for p in g["params"]] for g in opt.param_groups)
    assert sorted(muon) == sorted(
        f"layers.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    )
    assert sorted(embeddings) == ["embed.weight", "head.weight"]
    assert all(n.endswith("norm.weight") for n in vectors) and len(vectors) == 2 * 4 + 1


def test_the_swiglu_width_matches_the_parameters_of_a_two_matrix_mlp() -> None:
    from lmtrain.presets import apply_overrides, get_preset

    relu2 = get_preset("small", "modern")
    swiglu = apply_overrides(relu2, {"mlp": "swiglu"})
    with torch.device("meta"):
        one_relu2 = sum(p.numel() for p in build_model(relu2).layers[0].mlp.parameters())
        one_swiglu = sum(p.numel() for p in build_model(swiglu).layers[0].mlp.parameters())
    assert abs(one_swiglu - one_relu2) / one_relu2 < 0.01


def test_activation_checkpointing_gives_the_same_losses_and_gradients() -> None:
    """--activation-checkpointing recomputes each block in the backward pass: the same loss and gradients (dropout
    included: its RNG state is replayed), the same parameter names."""
    from lmtrain.distributed.world import World
    from lmtrain.train.parallel import wrap_model

    cfg = dataclasses.replace(EVERYTHING, dropout=0.1)
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    results = []
    for checkpointing in (False, True):
        model = randomised(_model(cfg), scale=0.1).train()
        runner = wrap_model(
            model, World(device=torch.device("cpu")), "ddp", False, activation_checkpointing=checkpointing
        )
        calls = []
        model.layers[0].mlp.register_forward_pre_hook(lambda *_, seen=calls: seen.append(1))
        torch.manual_seed(5)
        _, loss = runner(idx, idx)
        loss.backward()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in the backward pass
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=0, atol=1e-6)
