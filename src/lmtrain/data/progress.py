"""Progress of a prepare: a rich bar with MB/s and the time left on a terminal, a plain line every few seconds
elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

PLAIN_EVERY_S = 10.0


class PrepareProgress:
    """Counts input bytes done out of `total`; shows them as a bar (terminal) or lines (`log`), or not at all."""

    def __init__(self, label: str, total: int, log: Callable[[str], None] | None, stream: Any = None) -> None:
        self.label, self.total, self.log = label, max(total, 1), log
        self.done = 0
        self.t0 = self._last = time.perf_counter()
        stream = sys.stderr if stream is None else stream
        self._bar: Any = None
        if log is not None and hasattr(stream, "isatty") and stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=self.total)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = time.perf_counter()
        if self.log is not None and now - self._last >= PLAIN_EVERY_S:
            self._last = now
            rate = self.done / (now - self.t0) / 1e6
            left = (self.total - self.done) / 1e6 / rate if rate > 0 else float("nan")
            self.log(
                f"{self.label}: {self.done / 1e6:,.0f} of {self.total / 1e6:,.0f} MB, {rate:.1f} MB/s, {left:.0f} s left"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
