"""The architecture configs, validated on construction (no torch import): the fields every decoder shares
(`ModelConfig`), GPT-2's block (`GPTConfig`) and the modern block (`ModernConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from lmtrain.errors import ConfigError
from lmtrain.fields import option

Mlp = Literal["relu2", "swiglu", "gelu"]
RopeScaling = Literal["none", "linear", "llama3"]
LossImpl = Literal["fused", "plain"]
"""How a model computes its training loss: fused (chunked head + loss, no logits tensor) or plain (full logits)."""
Reduction = Literal["mean", "sum"]
"""How a loss gathers its targets: their mean, or their sum (a step of conversations divides it by its count)."""


def counted(groups: dict[str, int], *, lookup: int) -> dict[str, int]:
    """An architecture's parameter groups with the totals every architecture reports: `total`, `non_embedding` (the
    blocks and the final norm) and `lookup` (parameters only looked up, never multiplied: a position table, an
    untied input embedding)."""
    return groups | {
        "total": sum(groups.values()),
        "non_embedding": groups["blocks"] + groups["final_norm"],
        "lookup": lookup,
    }


def _positive_ints(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"invalid model config: {name}={value!r} must be a positive integer")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every decoder-only architecture shares; `arch` names the subclass in config.json."""

    arch: ClassVar[str] = ""
    vocab_size: int = option(
        50257,
        "Number of token ids; GPT-2 BPE has 50,257 (50,256 merges and bytes plus <|endoftext|>).",
    )
    n_layer: int = option(12, "Number of transformer blocks.")
    n_head: int = option(12, "Attention heads per block; d_model must be a multiple of it.")
    d_model: int = option(768, "Width of the residual stream (GPT-2's n_embd).")
    d_ff: int = option(3072, "Hidden width of the MLP; GPT-2 uses 4 x d_model.")
    max_seq_len: int = option(1024, "Longest sequence the model accepts; longer input is an error.")
    dropout: float = option(0.1, "Dropout on embeddings, attention weights and residual branches; 0 disables it.")
    init_std: float = option(0.02, "Standard deviation of the normal weight initialisation (GPT-2: 0.02).")
    pad_vocab_to: int = option(
        1,
        "Round the embedding and output rows up to a multiple of this (64: 50,257 -> 50,304) for GPU matmul "
        "alignment; the extra rows never enter a softmax, are never sampled and are dropped on export.",
    )

    def __post_init__(self) -> None:
        _positive_ints(self, ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "max_seq_len", "pad_vocab_to"))
        if self.d_model % self.n_head and not self.sets_head_size:
            raise ConfigError(
                f"invalid model config: d_model={self.d_model} must be a multiple of n_head={self.n_head} "
                f"(each head gets d_model/n_head dimensions)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"invalid model config: dropout={self.dropout} must be in [0, 1)")
        if not self.init_std > 0:
            raise ConfigError(f"invalid model config: init_std={self.init_std} must be > 0")

    @property
    def head_size(self) -> int:
        """Dimensions per attention head (d_model / n_head unless the architecture sets it)."""
        return self.d_model // self.n_head

    @property
    def sets_head_size(self) -> bool:
        """Whether the config gives head_size itself rather than d_model / n_head."""
        return False

    @property
    def attn_width(self) -> int:
        """Width of the attention's queries and of its output projection's input: n_head x head_size."""
        return self.n_head * self.head_size

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

    @property
    def tied_head(self) -> bool:
        """Whether the output projection is the token embedding (one tensor, two gradients summed)."""
        return True

    def activations_per_token(self) -> int:
        """Values one block keeps per token for the backward pass (Korthikanti et al., 2022: 34·d bytes in 16-bit,
        attention scores excluded as SDPA keeps none); an architecture counts its own where it differs."""
        return 17 * self.d_model

    def param_counts(self) -> dict[str, int]:
        """Parameter counts by group, computed from the config alone (each architecture's own; see `counted`): every
        trainable parameter, a tied embedding once, padded vocabulary rows included."""
        raise NotImplementedError(f"{type(self).__name__} must say how many parameters it has")


@dataclass(frozen=True, kw_only=True)
class GPTConfig(ModelConfig):
    """GPT-2's block: learned positions, LayerNorm, tanh-GELU MLP, biases, tied head."""

    arch: ClassVar[str] = "gpt2"
    bias: bool = option(True, "Biases in linear layers and LayerNorms, as GPT-2 has them.")
    layer_norm_eps: float = option(1e-5, "LayerNorm epsilon (GPT-2: 1e-5).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"invalid model config: layer_norm_eps={self.layer_norm_eps} must be > 0")

    def param_counts(self) -> dict[str, int]:
        """Token and position embeddings, blocks, final LayerNorm; the position table is only looked up."""
        d, f, b = self.d_model, self.d_ff, int(self.bias)
        ln = d * (1 + b)
        attn = d * 3 * d + 3 * d * b + d * d + d * b
        mlp = d * f + f * b + f * d + d * b
        groups = {
            "token_embedding": self.padded_vocab * d,
            "position_embedding": self.max_seq_len * d,
            "blocks": self.n_layer * (2 * ln + attn + mlp),
            "final_norm": ln,
        }
        return counted(groups, lookup=groups["position_embedding"])


SWIGLU_MULTIPLE = 8
"""SwiGLU's hidden width is rounded to a multiple of this."""


def swiglu_width(d_ff: int) -> int:
    """The SwiGLU hidden width with the parameters of a two-matrix MLP of width d_ff: 2/3 d_ff, to a multiple of 8."""
    return max(SWIGLU_MULTIPLE, round(2 * d_ff / 3 / SWIGLU_MULTIPLE) * SWIGLU_MULTIPLE)


@dataclass(frozen=True, kw_only=True)
class ModernConfig(ModelConfig):
    """The modern block: rotary positions (optionally scaled), RMSNorm, QK-norm, no biases but optional q/k/v ones,
    zero-initialised output projections."""

    arch: ClassVar[str] = "modern"
    dropout: float = option(
        0.0,
        "Dropout on attention weights and residual branches; 0 disables it (the modern block's default).",
    )
    mlp: Mlp = option(
        "relu2",
        "MLP: relu2 (ReLU squared), swiglu (gated SiLU; d_ff defaults to a parameter-matched 2/3 of 4 x d_model) or"
        " gelu.",
    )
    tie: bool = option(
        True,
        "Tie the output projection to the token embedding; --no-tie gives an untied head that starts at zero.",
    )
    n_kv_head: int | None = option(
        None,
        "Key/value heads for grouped-query attention; n_head must be a multiple of it (default n_head).",
    )
    qk_norm: bool = option(True, "RMSNorm of each head's queries and keys before the rotation.")
    logit_softcap: float | None = option(
        None,
        "Soft-cap the logits to (-C, C) with C*tanh(z/C); no transformers class computes it, so it cannot be exported.",
    )
    norm_eps: float = option(1e-6, "RMSNorm epsilon.")
    rope_theta: float = option(10000.0, "Base of the rotary position frequencies.")
    head_dim: int | None = option(
        None,
        "Dimensions per attention head when n_head x head_dim differs from d_model (Qwen3: 16 x 128 on 1,024); "
        "default d_model / n_head.",
    )
    qkv_bias: bool = option(False, "Biases on the query, key and value projections (Qwen2 / Qwen2.5).")
    rope_scaling: RopeScaling = option(
        "none",
        "Rotary frequency scaling for a longer context: none, linear (every frequency / rope_factor) or llama3 "
        "(Llama 3.1 / 3.2: low frequencies / rope_factor, high ones kept, a smooth band between).",
    )
    rope_factor: float = option(1.0, "The rotary scaling factor of --rope-scaling linear or llama3 (Llama-3.2: 32).")
    rope_low_freq_factor: float = option(1.0, "--rope-scaling llama3: wavelengths above original / this are scaled.")
    rope_high_freq_factor: float = option(4.0, "--rope-scaling llama3: wavelengths below original / this are kept.")
    rope_original_max_seq_len: int = option(
        8192,
        "--rope-scaling llama3: the context the frequencies were trained for (original_max_position_embeddings).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_kv_head is not None:
            _positive_ints(self, ("n_kv_head",))
            if self.n_head % self.n_kv_head:
                raise ConfigError(
                    f"invalid model config: n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}"
                )
        if self.head_dim is not None:
            _positive_ints(self, ("head_dim",))
        if self.head_size % 2:
            raise ConfigError(f"invalid model config: rotary positions need an even head_dim, got {self.head_size}")
        _positive_ints(self, ("rope_original_max_seq_len",))
        if not self.rope_factor >= 1.0:
            raise ConfigError(f"invalid model config: rope_factor={self.rope_factor} must be >= 1")
        if self.rope_scaling == "llama3" and not 0 < self.rope_low_freq_factor < self.rope_high_freq_factor:
            raise ConfigError(
                f"invalid model config: --rope-scaling llama3 needs 0 < rope_low_freq_factor "
                f"({self.rope_low_freq_factor:g}) < rope_high_freq_factor ({self.rope_high_freq_factor:g})"
            )
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
    def head_size(self) -> int:
        """Dimensions per attention head: head_dim, else d_model / n_head."""
        return self.head_dim or self.d_model // self.n_head

    @property
    def sets_head_size(self) -> bool:
        """Whether the config gives head_size itself rather than d_model / n_head."""
        return self.head_dim is not None

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

    @property
    def tied_head(self) -> bool:
        return self.tie

    def activations_per_token(self) -> int:
        """Values one block keeps per token: both norms' inputs and outputs and the residual (5·d), q/k/v before and
        after QK-norm and the rotation (2 x their width), attention output and projection input (2 x n_head·head_dim),
        and the MLP's matrix outputs and activations (SwiGLU 4·d_ff, ReLU² 3·d_ff, GELU 2·d_ff)."""
        qkv = (self.n_head + 2 * self.kv_heads) * self.head_size
        mlp = {"swiglu": 4, "relu2": 3, "gelu": 2}[self.mlp] * self.d_ff
        return 5 * self.d_model + 2 * qkv + 2 * self.attn_width + mlp

    def param_counts(self) -> dict[str, int]:
        """Token embedding, untied head, blocks, final RMSNorm; an untied input embedding is only looked up."""
        d, hs = self.d_model, self.head_size
        qkv = (self.n_head + 2 * self.kv_heads) * hs
        attn = d * qkv + self.attn_width * d + (2 * hs if self.qk_norm else 0) + (qkv if self.qkv_bias else 0)
        mlp = 3 * d * self.d_ff if self.mlp == "swiglu" else 2 * d * self.d_ff
        groups = {
            "token_embedding": self.padded_vocab * d,
            "output_head": 0 if self.tie else self.padded_vocab * d,
            "blocks": self.n_layer * (2 * d + attn + mlp),
            "final_norm": d,
        }
        return counted(groups, lookup=0 if self.tie else groups["token_embedding"])
