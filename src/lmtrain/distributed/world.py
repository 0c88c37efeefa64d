"""The world of a training run: its processes, their devices, and every call lmtrain makes to torch.distributed.

`torchrun` starts one process per device and sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
`init_world` reads them once. Without them the run is one process, world size 1, with no process group, through
the same code. Nothing else in lmtrain reads those variables or calls torch.distributed.

Gradients travel on the device's backend (NCCL on CUDA, gloo on the CPU). Small control messages (the stop flag,
warnings, RNG states, barriers) travel on a gloo group over the CPU, so reading them never waits for the GPU.
`parallel.py` spreads the model over the ranks; `peers.py` is what the ranks tell each other through the store
(heartbeats, the first failure), from which `lost_peer` and `failure_guard` turn one rank's failure into every rank's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from lmtrain.distributed.peers import Peers, default_store
from lmtrain.errors import ConfigError, LmtrainError, TrainingFailed
from lmtrain.runtime import select_device
from lmtrain.train_config import Parallel

CLOSED_KEY = "lmtrain/closed"
"""Store key every rank increments once it has left the process group."""
CLOSE_WAIT_S = 10.0
"""How long rank 0 waits at most for the other ranks to leave the process group."""
REPORT_WAIT_S = 0.2
"""How long a failed rank looks for another rank's error before it watches the heartbeats (a rank reports before its
process leaves, so the error is there by the time a collective fails because of it)."""
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """The processes of a run: this one's rank, all of them, its device and the process groups."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    """nccl or gloo; None: one process and no process group."""
    timeout_s: float = 600.0
    control: Any = None
    """The gloo group for CPU messages (None: the default group, when it is gloo itself)."""
    peers: Peers | None = None
    """What this rank tells the other ranks through the store, and knows of them (None: one process)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group exists (launched by torchrun, even with one process)."""
        return self.backend is not None

    def max_int(self, value: int) -> int:
        """The largest of every rank's `value` (each rank gets it)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return int(t.item())

    def sum_floats(self, values: list[float]) -> list[float]:
        """Every rank's `values` summed element-wise in float64 (each rank gets the sums)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return t.tolist()

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor on this rank's device (on the device's backend)."""
        if not self.distributed:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / self.world_size

    def gather_objects(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order (each rank gets the list)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def barrier(self, timeout_s: float | None = None) -> None:
        """Wait for every rank; a rank that does not arrive within the timeout is named in the error."""
        if self.distributed:
            dist.monitored_barrier(self.control, timeout=timedelta(seconds=timeout_s or self.timeout_s))

    def in_turn(self, work: Callable[[], T], timeout_s: float) -> T:
        """`work()` on rank 0 first, then on the first rank of every other node, then on the rest (what the first
        prepares into a shared cache the others find); every rank waits up to `timeout_s` for its turn."""
        wave = 0 if self.rank == 0 else 1 if self.local_rank == 0 else 2
        result = None
        for turn in range(3):
            if wave == turn:
                result = work()
            self.barrier(timeout_s)
        return result  # type: ignore[return-value]

    def from_main(self, work: Callable[[], T]) -> T:
        """`work()` on rank 0 alone, its result on every rank; an LmtrainError it raises is raised on every rank."""
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, work())
            except LmtrainError as exc:
                outcome = (False, exc)
        ok, value = self.broadcast_object(outcome)
        if not ok:
            raise value
        return value

    def close(self, failed: bool = False) -> None:
        """Leave the process group. Rank 0 hosts the store the other ranks' threads talk to, so it waits (at most
        CLOSE_WAIT_S) until every rank has left before its process may exit; a rank that `failed` first waits instead
        until every other rank has read its error (they are waiting for it in a collective, which fails only once this
        process has left)."""
        if not (self.distributed and dist.is_initialized()):
            return
        store = default_store()
        own_failure = failed and self.peers is not None and self.peers.failed_rank() == self.rank
        if own_failure:
            self.peers.wait_until_seen(CLOSE_WAIT_S)
        if self.peers is not None:
            self.peers.stop()
        dist.destroy_process_group()
        deadline = time.monotonic() + (0.0 if own_failure else CLOSE_WAIT_S)
        with contextlib.suppress(Exception):  # a rank that died left nothing to wait for
            if store is not None and store.add(CLOSED_KEY, 1) and self.rank == 0:
                while store.add(CLOSED_KEY, 0) < self.world_size and time.monotonic() < deadline:
                    time.sleep(0.02)


def launched(env: Mapping[str, str]) -> bool:
    """Whether torchrun (or another launcher setting RANK and WORLD_SIZE) started this process."""
    return all(key in env for key in ("RANK", "WORLD_SIZE"))


def planned_world_size(env: Mapping[str, str] | None = None) -> int:
    """The world size torchrun asked for (1 without torchrun), read before any process group exists, so that a
    configuration that does not fit it fails on every rank alike, before the ranks connect."""
    env = os.environ if env is None else env
    if not launched(env):
        return 1
    try:
        return int(env["WORLD_SIZE"])
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


def init_world(device: str, parallel: Parallel, timeout_s: float, env: Mapping[str, str] | None = None) -> World:
    """The world from the environment: one process without torchrun, else this rank's process group and device.

    Under torchrun each process takes `cuda:LOCAL_RANK` (NCCL), or the CPU (gloo). `--parallel fsdp` without
    torchrun is a ConfigError.
    """
    env = os.environ if env is None else env
    if not launched(env):
        if parallel == "fsdp":
            raise ConfigError(
                "--parallel fsdp shards the model over several processes: launch it with "
                "torchrun --nproc_per_node N -m lmtrain train ... (or ./run/run_train_lm.sh --gpus N)"
            )
        return World(device=select_device(device), timeout_s=timeout_s)
    world_size = planned_world_size(env)
    try:
        rank = int(env["RANK"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    chosen = select_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank}, but this machine has {torch.cuda.device_count()} GPU(s); "
                f"start at most that many processes per node (--nproc_per_node)"
            )
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    elif chosen.type == "mps":
        raise ConfigError("torchrun with --device mps is not supported; use --device cpu or cuda")
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(backend, timeout=timeout, **({"device_id": chosen} if backend == "nccl" else {}))
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    peers = Peers(default_store(), rank=rank, world_size=world_size)
    return World(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        device=chosen,
        backend=backend,
        timeout_s=timeout_s,
        control=control,
        peers=peers,
    )


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of `rank`: rank 0 keeps the run's stream; the others get streams of their own."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] % 2**63)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def lost_peer(world: World, exc: BaseException, *, waited_s: float | None = None) -> str | None:
    """Why another rank stopped, when `exc` is this rank failing because of it; None when `exc` is this rank's own
    failure. Decided by the store and by what torch raises, never by `exc`'s text: another rank's error in the store;
    a rank whose heartbeat stopped (gone or frozen); an error torch types as a collective's (`DistError`: NCCL, the
    store, the network); or, for a rank that hangs (gloo's timeout is a plain RuntimeError), a step that failed only
    after waiting `waited_s` >= --dist-timeout seconds."""
    if not world.distributed or world.peers is None:
        return None
    reported = world.peers.peer_failure(wait_s=REPORT_WAIT_S)
    if reported is not None:
        return reported
    silent = world.peers.silent_ranks()
    if silent is None:
        return f"the store of the process group stopped answering (its host is gone; {_first_line(exc)})"
    if silent:
        return f"{', '.join(f'rank {r}' for r in silent)} stopped answering ({_first_line(exc)})"
    if isinstance(exc, dist.DistError):
        return f"another rank stopped answering ({_first_line(exc)})"
    if waited_s is not None and waited_s >= world.timeout_s:
        return f"another rank did not answer within --dist-timeout {world.timeout_s:g} s ({_first_line(exc)})"
    return world.peers.peer_failure()  # a last look: a rank may have reported while the heartbeats were read


def report_failure(world: World, message: str) -> None:
    """Leave this rank's error where the other ranks look when their own steps fail (the first error stays)."""
    if world.peers is not None:
        world.peers.report(f"rank {world.rank}: {message}")


@contextlib.contextmanager
def failure_guard(world: World) -> Iterator[None]:
    """Turn one rank's failure into every rank's: a rank that raises leaves its error for the others; a rank that
    fails because another rank stopped raises TrainingFailed naming that rank's error."""
    if not world.distributed or world.peers is None:
        yield
        return
    try:
        yield
    except LmtrainError as exc:
        report_failure(world, str(exc))
        raise
    except Exception as exc:
        if world.peers.failed_rank() == world.rank:  # this rank's own failure, already judged by the trainer
            raise
        peer = lost_peer(world, exc)
        if peer is None:
            report_failure(world, f"{type(exc).__name__}: {exc}")
            raise
        raise TrainingFailed(
            f"rank {world.rank} stopped because {peer}; every rank stopped (a rank waits at most --dist-timeout "
            f"{world.timeout_s:g} s for the others)"
        ) from None
