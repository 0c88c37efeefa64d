"""Warnings from ranks other than 0, carried to rank 0's log at each log point."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

from lmtrain.distributed.world import World
from lmtrain.train.events import Event, EventBus, Warned

SHARED_CODES = ("nan.skipped",)
"""Warnings every rank announces alike from values reduced over ranks: rank 0's own copy is enough."""


class Outbox:
    """On a rank other than 0: an observer holding the warnings announced there (Python warnings included, while
    `capturing`); `deliver`, called by every rank at the same points, announces them on rank 0 as `rank N: ...`."""

    def __init__(self, world: World, bus: EventBus) -> None:
        self.world, self.bus = world, bus
        self.held: list[Warned] = []
        self.sender = world.distributed and not world.is_main
        if self.sender:
            bus.add(self)

    def on_event(self, event: Event) -> None:
        if isinstance(event, Warned) and event.code not in SHARED_CODES:
            self.held.append(event)

    def close(self) -> None:
        """Nothing to release."""

    def deliver(self) -> None:
        """Gather every rank's held warnings; rank 0 announces them. Every rank must call it."""
        if not self.world.distributed:
            return
        held, self.held = self.held, []
        gathered = self.world.gather_objects(held)
        if self.world.is_main:
            for rank, events in enumerate(gathered):
                for event in events if rank else ():
                    self.bus.publish(Warned(event.step, event.code, f"rank {rank}: {event.message}"))

    @contextlib.contextmanager
    def capturing(self, step: Callable[[], int]) -> Iterator[None]:
        """On a rank other than 0, Python warnings become warnings of the run (`rank.warning`) instead of lines on
        that rank's stderr; rank 0 keeps its own."""
        if not self.sender:
            yield
            return

        def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
            self.bus.publish(Warned(step(), "rank.warning", f"{category.__name__}: {message} ({filename}:{lineno})"))

        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
