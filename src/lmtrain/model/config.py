"""GPTConfig: the architecture of a GPT-2 style decoder, validated on construction (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass

from lmtrain.errors import ConfigError


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of a GPT-2 style decoder-only transformer."""

    vocab_size: int = 50257
    """Number of token ids; GPT-2 BPE has 50,257 (50,256 merges and bytes plus <|endoftext|>)."""
    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; d_model must be a multiple of it."""
    d_model: int = 768
    """Width of the residual stream (GPT-2's n_embd)."""
    d_ff: int = 3072
    """Hidden width of the MLP; GPT-2 uses 4 x d_model."""
    max_seq_len: int = 1024
    """Longest sequence the model accepts (number of learned positions); longer input is an error."""
    dropout: float = 0.1
    """Dropout on embeddings, attention weights and residual branches (GPT-2 used 0.1); 0 disables it."""
    bias: bool = True
    """Biases in linear layers and LayerNorms, as GPT-2 has them."""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon (GPT-2: 1e-5)."""
    init_std: float = 0.02
    """Standard deviation of the normal weight initialisation (GPT-2: 0.02)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"invalid model config: {name}={value!r} must be a positive integer")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"invalid model config: d_model={self.d_model} must be a multiple of n_head={self.n_head} "
                f"(each head gets d_model/n_head dimensions)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"invalid model config: dropout={self.dropout} must be in [0, 1)")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"invalid model config: layer_norm_eps={self.layer_norm_eps} must be > 0")
        if not self.init_std > 0:
            raise ConfigError(f"invalid model config: init_std={self.init_std} must be > 0")

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head."""
        return self.d_model // self.n_head
