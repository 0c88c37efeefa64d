"""Training log: a human line per record on stdout, and the same as one JSON object per line in metrics.jsonl."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmtrain.files import write_text_atomic


class MetricsLog:
    """Appends records to OUT/metrics.jsonl and echoes them; resuming drops records after the resumed step."""

    def __init__(
        self, path: Path, total_steps: int, echo: Callable[[str], None], resume_step: int | None = None
    ) -> None:
        self.path = path
        self.total_steps = total_steps
        self.echo = echo
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))
        self._file = open(path, "a")

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def train(self, step: int, epoch: float, loss: float, lr: float, grad_norm: float, tokens_per_s: float) -> None:
        """One training record: the loss, LR and gradient norm of optimizer step `step`."""
        self._write(
            {
                "step": step,
                "epoch": round(epoch, 4),
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens_per_s": round(tokens_per_s, 1),
            }
        )
        width = len(str(self.total_steps))
        self.echo(
            f"step {step:>{width}}/{self.total_steps} | epoch {epoch:6.2f} | loss {loss:.4f} | lr {lr:.2e} | "
            f"grad norm {grad_norm:.3f} | {tokens_per_s:,.0f} tok/s"
        )

    def eval(self, step: int, val_loss: float) -> None:
        """One evaluation record."""
        ppl = math.exp(val_loss) if val_loss < 50 else float("inf")
        self._write({"step": step, "val_loss": val_loss, "val_ppl": ppl})
        self.echo(f"step {step} | val loss {val_loss:.4f} | val ppl {ppl:,.2f}")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
