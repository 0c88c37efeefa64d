"""The language-model loss without the batch's logits: the tied output projection and cross-entropy, fused.

`head_loss` computes mean cross-entropy(h @ W.T, targets) through torch's chunked
`F.linear_cross_entropy`: it walks the rows in chunks, so a (rows, vocab) logits tensor exists for one chunk at a
time, and it computes the gradients of h and W in the same pass (backward only scales them). The plain path,
`F.cross_entropy(F.linear(h, W).float(), targets)`, materialises (B*T, V) logits, an fp32 copy under autocast, the
log-softmax and their gradients: 3.3 GB for 32 x 512 tokens of GPT-2's vocabulary.

Under autocast the projection runs in the autocast dtype (bf16 on a GPU), with fp32 accumulation inside the op.

Without gradients (evaluation), `nll_sum` is used instead, the function `lmtrain eval` scores with: on the CPU it
computes each chunk's logits transposed, W @ h_c.T, which this CPU's BLAS runs about 1.3x faster than h_c @ W.T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmtrain.model.config import LossImpl, Reduction
from lmtrain.model.sizing import LOSS_CHUNK_ROWS

try:  # torch >= 2.13
    from torch.nn.modules.linear_cross_entropy_options import LinearCrossEntropyOptions
except ImportError:  # older torch (the GPU machines' 2.11): `ChunkedHeadLoss` below does the same job
    LinearCrossEntropyOptions = None  # type: ignore[assignment,misc]  # and F.linear_cross_entropy with it


CPU_EVAL_ROWS = 128
"""Rows per chunk of `nll_sum` on the CPU: a (50,257 x 128) fp32 logits block is 26 MB (measured fastest of 64-2,048)."""
GPU_EVAL_ROWS = 4096

CPU_CHUNK_ROWS = LOSS_CHUNK_ROWS
"""Rows per chunk on the CPU: 1,024 x 50,257 fp32 logits (206 MB). Measured on the 2-core machine, 512 and 1,024
rows take the same time and torch's automatic choice (a few rows per chunk) is 6-15x slower."""


def _options(device: torch.device):
    if device.type == "cpu":
        return LinearCrossEntropyOptions(chunking_method=None, batch_chunk_size=CPU_CHUNK_ROWS, acc_policy="accurate")
    return LinearCrossEntropyOptions()  # torch's per-(device, dtype) choice, measured by its authors on GPUs


def _capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Logits soft-capped to (-C, C) as C*tanh(z/C); unchanged without a cap."""
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def _pad_mask(weight: torch.Tensor, vocab: int) -> torch.Tensor:
    """A bias of 0 for the `vocab` real rows of `weight` and -inf for the padding rows after them."""
    bias = torch.zeros(weight.size(0), dtype=torch.float32, device=weight.device)
    bias[vocab:] = float("-inf")
    return bias


def head_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    impl: LossImpl = "fused",
    *,
    vocab: int | None = None,
    softcap: float | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy of logits h @ weight.T (h: (..., C), weight: (V, C)) over targets != -100 (float32): their
    mean, or with `reduction="sum"` their sum (0, with gradients of 0, when every target is ignored: the loss of a
    micro-batch with no trained token, which its step divides by the step's count of trained tokens).

    `vocab`: only the first `vocab` rows are tokens (the rest pad the matrix and never enter the softmax).
    `softcap`: the logits are C*tanh(z/C). `impl="plain"` is the reference: full logits, upcast to fp32,
    `F.cross_entropy`.
    """
    vocab = weight.size(0) if vocab is None else vocab
    h = h.reshape(-1, h.size(-1))  # (N, C)
    targets = targets.reshape(-1)  # (N,)
    if impl == "plain":
        logits = _capped(F.linear(h, weight[:vocab]).float(), softcap)
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction=reduction)
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):  # evaluation: lmtrain eval's path
        total, count = nll_sum(h, weight, targets, vocab=vocab, softcap=softcap)
        if reduction == "sum":
            return total.float()
        return (total / count).float() if count else torch.full((), math.nan, device=h.device)
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, weight = h.to(dtype), weight.to(dtype)
    with torch.autocast(h.device.type, enabled=False):
        if LinearCrossEntropyOptions is None or softcap is not None:
            rows = CPU_CHUNK_ROWS if h.device.type == "cpu" else GPU_EVAL_ROWS
            loss = ChunkedHeadLoss.apply(h, weight[:vocab], targets, Chunking(rows, softcap, reduction == "sum"))
        else:
            bias = _pad_mask(weight, vocab).to(weight.dtype) if vocab < weight.size(0) else None
            loss = F.linear_cross_entropy(
                h,
                weight,
                targets,
                linear_bias=bias,
                ignore_index=-100,
                reduction=reduction,
                options=_options(h.device),
            )
    return loss.float()


@dataclass(frozen=True)
class Chunking:
    """How `ChunkedHeadLoss` walks the rows: `rows` at a time, logits soft-capped at `softcap` (None: uncapped)."""

    rows: int
    softcap: float | None
    summed: bool = False
    """The sum of the losses instead of their mean."""


class ChunkedHeadLoss(torch.autograd.Function):
    """Mean (or summed) cross-entropy of h @ W.T (soft-capped when `softcap` is given) over targets != -100, a chunk of rows at a
    time, with the gradients of h and W computed in the forward pass (backward only scales them): for soft-capped
    logits, and for a torch without `F.linear_cross_entropy`."""

    @staticmethod
    def forward(ctx, h, weight, targets, chunking):  # type: ignore[override]
        rows, softcap = chunking.rows, chunking.softcap
        keep = targets != -100  # (N,)
        count = torch.ones((), device=h.device) if chunking.summed else keep.sum().clamp(min=1).float()
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, h.size(0), rows):
            h_part, kept = h[start : start + rows], keep[start : start + rows]
            y = targets[start : start + rows].clamp(min=0)
            logits = (h_part @ weight.T).float()  # (m, V)
            if softcap is not None:
                logits = _capped(logits, softcap)
                slope = 1.0 - (logits / softcap) ** 2  # d(capped)/d(raw)
            lse = torch.logsumexp(logits, dim=-1)  # (m,)
            total += ((lse - logits.gather(1, y[:, None])[:, 0]) * kept).sum()
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            probs[torch.arange(len(y), device=y.device), y] -= 1.0
            grad = probs.mul_((kept / count)[:, None])  # d(mean loss)/d(logits), 0 for ignored rows
            if softcap is not None:
                grad.mul_(slope)
            grad = grad.to(h.dtype)
            grad_h[start : start + rows] = grad @ weight
            grad_w += (grad.T @ h_part).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total / count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), (grad_w * grad_out).to(ctx.weight_dtype), None, None


@dataclass(frozen=True)
class TokenLosses:
    """The loss of every position of a batch, for scoring rows one by one (benchmarks, per-document figures)."""

    nll: torch.Tensor
    """(...) float32: the negative log-likelihood of each target, 0 where the target is ignored (-100)."""
    greedy: torch.Tensor
    """(...) bool: whether each target is the most likely token (what greedy decoding would emit); False where
    ignored."""


def token_losses(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab: int | None = None,
    softcap: float | None = None,
) -> TokenLosses:
    """The NLL and greedy match of every target (...,) given hidden states (..., C), without gradients; only the
    first `vocab` rows of `weight` are tokens and `softcap` caps the logits, as in `head_loss`."""
    shape = targets.shape
    nll, greedy = _scored(h, weight, targets, vocab=vocab, softcap=softcap, greedy=True)
    return TokenLosses(nll.reshape(shape), greedy.reshape(shape))


def nll_sum(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab: int | None = None,
    softcap: float | None = None,
) -> tuple[torch.Tensor, int]:
    """(summed negative log-likelihood as a float64 0-d tensor, count) over targets != -100, without gradients."""
    nll, _ = _scored(h, weight, targets, vocab=vocab, softcap=softcap, greedy=False)
    return nll.sum(dtype=torch.float64), int((targets != -100).sum())


def _scored(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab: int | None,
    softcap: float | None,
    greedy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL (N,) float32, greedy match (N,) bool) of the flattened targets, 0 and False where a target is -100.

    Logits exist for one chunk of the scored rows at a time, in fp32 for the log-sum-exp (under autocast the matmul
    runs in the autocast dtype). On the CPU each chunk's logits are computed transposed, W @ h_c.T, the layout this
    CPU's BLAS runs about 1.3x faster.
    """
    weight = weight if vocab is None else weight[:vocab]
    h = h.reshape(-1, h.size(-1))  # (N, C)
    targets = targets.reshape(-1)  # (N,)
    keep = targets != -100
    rows = keep.nonzero()[:, 0]  # (M,)
    nll = torch.zeros(targets.shape, dtype=torch.float32, device=h.device)  # (N,)
    match = torch.zeros(targets.shape, dtype=torch.bool, device=h.device)  # (N,)
    cpu = h.device.type == "cpu"
    with torch.no_grad():
        for part in rows.split(CPU_EVAL_ROWS if cpu else GPU_EVAL_ROWS):
            h_part, y = h[part], targets[part]  # (m, C), (m,)
            if cpu:
                logits = _capped(torch.matmul(weight, h_part.T).float(), softcap)  # (V, m)
                nll[part] = torch.logsumexp(logits, dim=0) - logits.gather(0, y[None])[0]
                if greedy:
                    match[part] = logits.argmax(dim=0) == y
            else:
                logits = _capped(F.linear(h_part, weight).float(), softcap)  # (m, V)
                nll[part] = torch.logsumexp(logits, dim=-1) - logits.gather(1, y[:, None])[:, 0]
                if greedy:
                    match[part] = logits.argmax(dim=-1) == y
    return nll, match
