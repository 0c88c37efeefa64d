"""What every transformers adapter (`hf_gpt2.py`, `hf_llama.py`) shares. Nothing here imports transformers.

The end-of-text and beginning-of-sequence ids of an exported config are the run's tokenizer's, so the adapters leave
them out and `interop/hf_folder.py` writes them from the tokenizer.
"""

from __future__ import annotations

import torch


def unpadded(weight: torch.Tensor, vocab: int) -> torch.Tensor:
    """The first `vocab` rows of an embedding or head, as a tensor of its own when rows were padded."""
    return weight if weight.size(0) == vocab else weight[:vocab].clone()
