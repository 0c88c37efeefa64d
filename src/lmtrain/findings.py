"""A finding: one checked fact about a run, OK, WARN or ERROR, with why it matters and what to do.

The doctor produces them before a run; the trainer announces them at its start. Both import this module, so the
training layer never reaches up into the doctor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["OK", "WARN", "ERROR"]


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    level: Level
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form (`lmtrain doctor --json`, metrics.jsonl's start record)."""
        return {"level": self.level, "code": self.code, "message": self.message}
