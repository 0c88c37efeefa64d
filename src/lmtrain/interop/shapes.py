"""The one check every reader makes of the tensors it is given: each tensor the config implies is there, with the
shape it implies, named in the source's own terms when it is not."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lmtrain.errors import CheckpointError


def check_shapes(
    expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]], *, where: Path, config: str
) -> None:
    """Every tensor of `expected` is in `given` with its shape; `config` names what implies them (for the message)."""
    for name, want in expected.items():
        got = given.get(name)
        if got is None:
            raise CheckpointError(f"{where} lacks the tensor {name} that its {config} implies")
        if tuple(got) != tuple(want):
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(got)}, but its {config} implies {tuple(want)}; the weights and "
                f"{config} are of different models"
            )
