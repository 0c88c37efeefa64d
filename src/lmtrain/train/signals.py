"""SIGINT and SIGTERM during training: the first asks for a checkpoint and a clean stop, a second stops at once."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a request to checkpoint and stop; a second one interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
