"""Every learning-rate and warmup default of lmtrain, in one place.

A run without --lr takes its preset's `PRESET_LR` for the AdamW groups; with the default --optimizer muon the blocks'
matrices run at `MUON_LR_FACTOR` times it. `tiny`'s LR won the recipe race on the sample (docs/learning-per-token.md);
the others scale it about as 1/d_model, as starting points (`lmtrain doctor --lr-find` checks yours). The modern
block keeps them: its sweep on `tiny` (bench/results/modern-sweep-cpu-2core.json) found the loss flat between these
and twice them, and worse with Muon at 6x.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

SIZE_LR: Mapping[str, float] = MappingProxyType({"micro": 6e-3, "tiny": 4e-3, "small": 2e-3, "base": 1.2e-3})
"""Peak LR of the AdamW groups of each preset size, for an architecture without an entry of its own in PRESET_LR."""
PRESET_LR: Mapping[str, Mapping[str, float]] = MappingProxyType({"gpt2": SIZE_LR, "modern": SIZE_LR})
"""Peak LR of the AdamW groups of each architecture's presets when --lr is not given (measured for these two)."""
MUON_LR_FACTOR = 3.0
"""--muon-lr when not given: this times --lr."""
MIN_LR_DIVISOR = 10
"""--min-lr when not given: --lr divided by this (the decay ends at a tenth of the peak)."""
FALLBACK_LR = 3e-4
"""The AdamW LR of a TrainConfig built in code without one (runs and recipes take their preset's)."""
WARMUP_SHARE = 0.05
"""Without --warmup: this share of the run's steps warm up ..."""
MAX_AUTO_WARMUP = 1000
"""... at most this many."""
BENCH_LR = 1e-4
"""The constant LR of `lmtrain bench train` (a step's speed does not depend on it)."""
NANOGPT_LR = 1e-3
"""The AdamW LR of the `nanogpt` recipe of `lmtrain bench recipe`: the best AdamW LR of the sweep on the sample
(nanoGPT's own 6e-4 for GPT-2 124M did worse there)."""


def preset_lr(arch: str, preset: str) -> float:
    """The default peak LR of the AdamW groups for `preset` of `arch`: its own entry in PRESET_LR, else SIZE_LR's."""
    return PRESET_LR.get(arch, SIZE_LR)[preset]


FINETUNE: Mapping[str, object] = MappingProxyType({"optimizer": "adamw", "lr": 1e-4, "schedule": "cosine"})
"""The training defaults of a run started from a trained model (--init-from) where a flag does not set them: the
optimizer, the peak LR of its groups and the schedule (the warmup stays 5% of the run). From the race and sweep in
bench/results/finetune-sweep-cpu-2core.json (bench/finetune.sh, bench/finetune_strong.sh): from a `tiny` already good
at the target's kind of text, as a released model is (validation loss 3.889), 40 steps on more of it reached 3.861
with AdamW at 1e-4, 3.872 at 3e-4 and 3.963 at 1e-3 (above the start), Muon (--muon-lr 3 x) 3.873 / 3.873 / 3.918.
From a start far from the target (a `tiny` trained on WikiText, 10.63 on the Linux documentation) higher LRs win
(Muon at 3e-3: 4.53, AdamW at 1e-3: 4.77): such a model is closer to one trained from scratch."""
