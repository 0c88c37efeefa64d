"""The protocol every architecture meets: `CausalLM`, the base of each model module.

An architecture implements `hidden` (token ids to final hidden states), `blocks` (the modules FSDP2 shards),
`output_weight` (the matrix the fused loss multiplies by) and `token_embedding`. Everything the rest of lmtrain needs
is derived from those here, once: logits, the loss, the evaluation sums, the loss of every position, the KV cache and
the parameters grouped by role.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmtrain.model.config import LossImpl, ModelConfig, Reduction
from lmtrain.model.head import TokenLosses, head_loss, nll_sum, token_losses
from lmtrain.model.kv_cache import KVCache
from lmtrain.model.packing import Packing


@dataclass(frozen=True)
class ParamRoles:
    """A model's trainable parameters by role, each exactly once."""

    matrices: list[nn.Parameter]
    """The blocks' 2-D weights (Muon's; AdamW decays them)."""
    embeddings: list[nn.Parameter]
    """2-D tensors outside the blocks: token and position tables, an untied head (AdamW, decayed)."""
    vectors: list[nn.Parameter]
    """Norm weights and biases (AdamW, never decayed)."""


class CausalLM(nn.Module):
    """A decoder-only language model: subclasses define `hidden`, `blocks` and `output_weight`."""

    config: ModelConfig

    def __init__(self, cfg: ModelConfig, loss_impl: LossImpl = "fused") -> None:
        super().__init__()
        self.config = cfg
        self.loss_impl: LossImpl = loss_impl

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, packing: Packing | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) for token ids `idx` (B, T); with `cache`, `idx` continues its sequence; with
        `packing`, each row holds several sequences, their positions and attention as it says."""
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, in order (FSDP2 shards each one)."""
        raise NotImplementedError

    @property
    def output_weight(self) -> torch.Tensor:
        """The output projection (padded_vocab, C): the tied token embedding or the head."""
        raise NotImplementedError

    @property
    def token_embedding(self) -> torch.Tensor:
        """The token embedding table (padded_vocab, C)."""
        raise NotImplementedError

    def check_length(self, start: int, length: int) -> None:
        """A ValueError when positions start..start+length do not fit the model's context."""
        if start + length > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {start + length} tokens is longer than max_seq_len={self.config.max_seq_len}; "
                f"split it into windows (inputs are never truncated silently)"
            )

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., vocab_size) from hidden states (..., C); padding rows are never among them."""
        z = F.linear(h, self.output_weight[: self.config.vocab_size])
        cap = self.config.logit_cap
        return z if cap is None else cap * torch.tanh(z / cap)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        packing: Packing | None = None,
        reduction: Reduction = "mean",
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logits (B, T, V), None) for token ids `idx` (B, T); with `targets` (B, T), (None, loss).

        The loss is the mean (or with `reduction="sum"` the sum) of the cross-entropy over targets != -100, computed
        by `head_loss` without materialising the logits (`loss_impl="plain"` computes them, as the reference). With
        `packing`, each row holds several sequences (packed conversations), positions and attention as it says.
        """
        h = self.hidden(idx, cache, packing)  # (B, T, C)
        if targets is None:
            return self.logits(h), None  # (B, T, V)
        loss = head_loss(
            h,
            self.output_weight,
            targets,
            self.loss_impl,
            vocab=self.config.vocab_size,
            softcap=self.config.logit_cap,
            reduction=reduction,
        )
        return None, loss

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(summed NLL in float64, count) of `targets` (B, T) given hidden states (B, T, C), without gradients."""
        return nll_sum(
            h,
            self.output_weight,
            targets,
            vocab=self.config.vocab_size,
            softcap=self.config.logit_cap,
        )

    def token_losses(self, h: torch.Tensor, targets: torch.Tensor) -> TokenLosses:
        """The NLL (B, T) and greedy match (B, T) of every target of `targets` (B, T) given hidden states (B, T, C),
        without gradients; ignored targets (-100, e.g. padding) score 0 and False."""
        return token_losses(
            h,
            self.output_weight,
            targets,
            vocab=self.config.vocab_size,
            softcap=self.config.logit_cap,
        )

    def new_cache(self, *, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch_size` sequences (the model's key/value heads, device and dtype)."""
        cfg = self.config
        param = self.output_weight
        return KVCache(
            n_layer=cfg.n_layer,
            batch_size=batch_size,
            n_head=cfg.kv_heads,
            head_dim=cfg.head_size,
            max_len=max_len or cfg.max_seq_len,
            device=param.device,
            dtype=param.dtype,
        )

    def parameter_roles(self) -> ParamRoles:
        """The trainable parameters by role, read from the module structure (never from parameter names)."""
        in_blocks = {id(p) for block in self.blocks() for p in block.parameters()}
        params = [p for p in self.parameters() if p.requires_grad]
        return ParamRoles(
            matrices=[p for p in params if p.dim() == 2 and id(p) in in_blocks],
            embeddings=[p for p in params if p.dim() >= 2 and id(p) not in in_blocks],
            vectors=[p for p in params if p.dim() < 2],
        )
