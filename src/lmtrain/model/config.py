"""The architecture configs, validated on construction (no torch import): the fields every decoder shares
(`ModelConfig`), GPT-2's block (`GPTConfig`) and the modern block (`ModernConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from lmtrain.errors import ConfigError

Mlp = Literal["relu2", "swiglu", "gelu"]


def _positive_ints(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"invalid model config: {name}={value!r} must be a positive integer")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every decoder-only architecture shares; `arch` names the subclass in config.json."""

    arch: ClassVar[str] = ""
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
    """Longest sequence the model accepts; longer input is an error."""
    dropout: float = 0.1
    """Dropout on embeddings, attention weights and residual branches; 0 disables it."""
    init_std: float = 0.02
    """Standard deviation of the normal weight initialisation (GPT-2: 0.02)."""
    pad_vocab_to: int = 1
    """Round the embedding and output rows up to a multiple of this (64: 50,257 -> 50,304) for GPU matmul alignment;
    the extra rows never enter a softmax, are never sampled and are dropped on export."""

    def __post_init__(self) -> None:
        _positive_ints(self, ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "max_seq_len", "pad_vocab_to"))
        if self.d_model % self.n_head:
            raise ConfigError(
                f"invalid model config: d_model={self.d_model} must be a multiple of n_head={self.n_head} "
                f"(each head gets d_model/n_head dimensions)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"invalid model config: dropout={self.dropout} must be in [0, 1)")
        if not self.init_std > 0:
            raise ConfigError(f"invalid model config: init_std={self.init_std} must be > 0")

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head."""
        return self.d_model // self.n_head

    @property
    def padded_vocab(self) -> int:
        """Rows of the embedding and output matrices: vocab_size rounded up to a multiple of pad_vocab_to."""
        return -(-self.vocab_size // self.pad_vocab_to) * self.pad_vocab_to

    @property
    def kv_heads(self) -> int:
        """Key/value heads per block (the KV cache holds these)."""
        return self.n_head

    @property
    def logit_cap(self) -> float | None:
        """The soft cap of the logits (None: uncapped)."""
        return None

    @property
    def gated_mlp(self) -> bool:
        """Whether the MLP is gated (three matrices, so its width is 2/3 of a two-matrix MLP's)."""
        return False

    @property
    def uniform_at_init(self) -> bool:
        """Whether the output head starts at zero, so that the first prediction is uniform (loss exactly ln(V))."""
        return False


@dataclass(frozen=True, kw_only=True)
class GPTConfig(ModelConfig):
    """GPT-2's block: learned positions, LayerNorm, tanh-GELU MLP, biases, tied head."""

    arch: ClassVar[str] = "gpt2"
    bias: bool = True
    """Biases in linear layers and LayerNorms, as GPT-2 has them."""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon (GPT-2: 1e-5)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"invalid model config: layer_norm_eps={self.layer_norm_eps} must be > 0")


SWIGLU_MULTIPLE = 8
"""SwiGLU's hidden width is rounded to a multiple of this."""


def swiglu_width(d_ff: int) -> int:
    """The SwiGLU hidden width with the parameters of a two-matrix MLP of width d_ff: 2/3 d_ff, to a multiple of 8."""
    return max(SWIGLU_MULTIPLE, round(2 * d_ff / 3 / SWIGLU_MULTIPLE) * SWIGLU_MULTIPLE)


@dataclass(frozen=True, kw_only=True)
class ModernConfig(ModelConfig):
    """The modern block: rotary positions, RMSNorm, QK-norm, no biases, zero-initialised output projections."""

    arch: ClassVar[str] = "modern"
    dropout: float = 0.0
    """Dropout on attention weights and residual branches; 0 disables it (the modern block's default)."""
    mlp: Mlp = "relu2"
    """MLP: relu2 (ReLU squared), swiglu (gated SiLU; d_ff defaults to a parameter-matched 2/3 of 4 x d_model) or gelu."""
    tie: bool = True
    """Tie the output projection to the token embedding; --no-tie gives an untied head that starts at zero."""
    n_kv_head: int | None = None
    """Key/value heads for grouped-query attention; n_head must be a multiple of it (default n_head)."""
    qk_norm: bool = True
    """RMSNorm of each head's queries and keys before the rotation."""
    logit_softcap: float | None = None
    """Soft-cap the logits to (-C, C) with C*tanh(z/C); no transformers class computes it, so it cannot be exported."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    rope_theta: float = 10000.0
    """Base of the rotary position frequencies."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_kv_head is not None:
            _positive_ints(self, ("n_kv_head",))
            if self.n_head % self.n_kv_head:
                raise ConfigError(
                    f"invalid model config: n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}"
                )
        if self.head_dim % 2:
            raise ConfigError(f"invalid model config: rotary positions need an even head_dim, got {self.head_dim}")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ConfigError(f"invalid model config: logit_softcap={self.logit_softcap} must be > 0")
        for name in ("norm_eps", "rope_theta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"invalid model config: {name}={getattr(self, name)} must be > 0")

    @property
    def kv_heads(self) -> int:
        """Key/value heads per block (the KV cache holds these)."""
        return self.n_kv_head or self.n_head

    @property
    def logit_cap(self) -> float | None:
        """The soft cap of the logits (None: uncapped)."""
        return self.logit_softcap

    @property
    def gated_mlp(self) -> bool:
        """Whether the MLP is gated (three matrices, so its width is 2/3 of a two-matrix MLP's)."""
        return self.mlp == "swiglu"

    @property
    def uniform_at_init(self) -> bool:
        """Whether the output head starts at zero, so that the first prediction is uniform (loss exactly ln(V))."""
        return not self.tie
