"""What the ranks of a run tell each other through the process group's store, beside the collectives: that each is
alive (a heartbeat), and the first failure.

Every rank runs a daemon thread that adds one to its counter in the store every BEAT_S seconds, while its own thread
computes or waits in a collective, so that the other ranks can tell a rank that is gone (its counter stopped) from one
that is only busy. A rank that fails leaves its error in the store; every other rank's thread reads it at its next beat
and acknowledges it, so the failed rank knows it may leave (its leaving is what makes the others' collectives fail:
gloo keeps the connections of a group open while anything holds it) and the others keep the error even when the
store leaves with it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import torch.distributed as dist

BEAT_KEY = "lmtrain/beat/"
"""Store key prefix of each rank's heartbeat counter (the rank follows)."""
FAILURE_KEY = "lmtrain/failure"
"""Store key where the first rank that fails leaves its error for the others."""
FAILED_RANK_KEY = "lmtrain/failed_rank"
"""Store key holding the rank that left the error (written after the error, so a reader that finds it finds both)."""
CLAIM_KEY = "lmtrain/failure_claim"
"""Store key the first failing rank claims (atomically), so that two ranks failing at once leave one error."""
ACK_KEY = "lmtrain/failure_seen"
"""Store key every other rank increments once it has read the error."""
BEAT_S = 0.5
"""Seconds between two heartbeats of a rank."""
SILENT_BEATS = 3
"""A rank whose counter did not move over this many beats stopped answering."""
STOP_WAIT_S = 60.0
"""How long `stop` waits for a beat under way to return from the store. The thread must not be inside a store call
when the interpreter shuts down: Python 3.11 ends such a daemon thread with a forced unwind through torch's C++
frames, which aborts the process ("terminate called without an active exception"); a beat on a loaded machine can take
longer than one second. A store whose host is gone fails its calls at once, so the wait is short but for a hung store."""


def default_store() -> Any:
    """The default group's key-value store (torch keeps it private; None where it is not there)."""
    getter = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return getter() if getter is not None else None
    except Exception:
        return None


class Peers:
    """This rank's side of the store: its heartbeat thread, its report of a failure, and what it knows of the others."""

    def __init__(self, store: Any, *, rank: int, world_size: int) -> None:
        self.store, self.rank, self.world_size = store, rank, world_size
        self.failure: tuple[int, str] | None = None
        """(rank, error) of the first failure, once this rank has read it."""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lmtrain-heartbeat-{rank}", daemon=True)
        if store is not None:
            self._beat()
            self.thread.start()

    def _beat(self) -> bool:
        """One heartbeat, and a look for another rank's failure; False when the store is gone."""
        with self.lock:
            return self._beat_locked()

    def _beat_locked(self) -> bool:
        try:
            self.store.add(f"{BEAT_KEY}{self.rank}", 1)
            if self.failure is None and self.store.check([FAILED_RANK_KEY]):
                rank = int(self.store.get(FAILED_RANK_KEY))
                self.failure = (rank, self.store.get(FAILURE_KEY).decode())
                if rank != self.rank:
                    self.store.add(ACK_KEY, 1)
            return True
        except Exception:  # the store's host is gone: nobody is left to tell
            return False

    def _run(self) -> None:
        while not self.stopping.wait(BEAT_S) and self._beat():
            pass

    def stop(self) -> None:
        """Stop the heartbeat (the rank is leaving the process group)."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=STOP_WAIT_S)

    def report(self, message: str) -> None:
        """Leave this rank's error for the others, unless a failure was reported first (the first one stays)."""
        with contextlib.suppress(Exception):  # the store may be gone with its host
            mine = str(self.rank).encode()
            if self.store is not None and self.store.compare_set(CLAIM_KEY, "", mine) == mine:
                self.store.set(FAILURE_KEY, message)
                self.store.set(FAILED_RANK_KEY, str(self.rank))
        self._beat()

    def failed_rank(self) -> int | None:
        """The rank whose failure was reported first, if one was."""
        self._beat()
        return self.failure[0] if self.failure is not None else None

    def peer_failure(self, wait_s: float = 0.0) -> str | None:
        """The error another rank left, if one did (looking for up to `wait_s` seconds); None when this rank left it."""
        deadline = time.monotonic() + wait_s
        while True:
            self._beat()
            if self.failure is not None:
                rank, message = self.failure
                return None if rank == self.rank else message
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def silent_ranks(self) -> list[int] | None:
        """The other ranks whose heartbeat did not move over SILENT_BEATS beats (gone, or frozen), in order; None when
        the store itself does not answer (its host, rank 0 or the first node's launcher, is gone)."""
        others = [r for r in range(self.world_size) if r != self.rank]
        try:
            before = [self.store.add(f"{BEAT_KEY}{r}", 0) for r in others]
            time.sleep(SILENT_BEATS * BEAT_S)
            after = [self.store.add(f"{BEAT_KEY}{r}", 0) for r in others]
        except Exception:  # the store's host is gone
            return None
        return [r for r, a, b in zip(others, before, after) if a == b]

    def wait_until_seen(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every other rank has read this rank's failure."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(Exception):  # the store's host is gone: nobody is left to read it
            while self.store.add(ACK_KEY, 0) < self.world_size - 1 and time.monotonic() < deadline:
                time.sleep(0.02)
