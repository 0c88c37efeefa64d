"""The world of a training run: its processes, their devices, and every call lmtrain makes to torch.distributed.

`torchrun` starts one process per device and sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
`init_world` reads them once. Without them the run is one process, world size 1, with no process group, through
the same code. Nothing else in lmtrain reads those variables or calls torch.distributed.

Gradients travel on the device's backend (NCCL on CUDA, gloo on the CPU). Small control messages (the stop flag,
warnings, RNG states, barriers) travel on a gloo group over the CPU, so reading them never waits for the GPU.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from lmtrain.errors import ConfigError, LmtrainError, TrainingFailed
from lmtrain.runtime import DTYPES, select_device

Parallel = Literal["ddp", "fsdp"]
FAILURE_KEY = "lmtrain/failure"
"""Store key where the first rank that fails leaves its error for the others."""
CLOSED_KEY = "lmtrain/closed"
"""Store key every rank increments once it has left the process group."""
CLOSE_WAIT_S = 10.0
"""How long rank 0 waits at most for the other ranks to leave the process group."""
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

    def report_failure(self, message: str) -> None:
        """Leave this rank's error where the other ranks look when their collectives fail."""
        store = _store() if self.distributed else None
        if store is not None:
            with contextlib.suppress(Exception):  # the store may be gone with its host
                if not store.check([FAILURE_KEY]):
                    store.set(FAILURE_KEY, f"rank {self.rank}: {message}")

    def peer_failure(self, wait_s: float = 2.0) -> str | None:
        """The error another rank left, if one did (waiting up to `wait_s` for it)."""
        store = _store() if self.distributed else None
        deadline = time.monotonic() + wait_s
        while store is not None:
            try:
                if store.check([FAILURE_KEY]):
                    return store.get(FAILURE_KEY).decode()
            except Exception:  # the store's host is gone
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return None

    def close(self) -> None:
        """Leave the process group. Rank 0 hosts the store the other ranks' threads talk to, so it waits (at most
        CLOSE_WAIT_S) until every rank has left before its process may exit."""
        if not (self.distributed and dist.is_initialized()):
            return
        store = _store()
        dist.destroy_process_group()
        deadline = time.monotonic() + CLOSE_WAIT_S
        with contextlib.suppress(Exception):  # a rank that died left nothing to wait for
            if store is not None and store.add(CLOSED_KEY, 1) and self.rank == 0:
                while store.add(CLOSED_KEY, 0) < self.world_size and time.monotonic() < deadline:
                    time.sleep(0.02)


def _store() -> Any:
    """The default group's key-value store (torch keeps it private; None where it is not there)."""
    getter = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return getter() if getter is not None else None
    except Exception:
        return None


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
    return World(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        device=chosen,
        backend=backend,
        timeout_s=timeout_s,
        control=control,
    )


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of `rank`: rank 0 keeps the run's stream; the others get streams of their own."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] % 2**63)


def wrap_model(model: nn.Module, world: World, parallel: Parallel, compile: bool, dtype: str = "fp32") -> nn.Module:
    """The module the training step calls: FSDP2 shards (per block, then the root) in place, DDP wraps, compile
    compiles; one process without torchrun only compiles. Checkpoints always come from `model` itself."""
    if world.distributed and parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(
            param_dtype=DTYPES[dtype] if dtype in ("bf16", "fp16") else None, reduce_dtype=torch.float32
        )
        for block in model.blocks():
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    compiled = torch.compile(model) if compile else model
    if not world.distributed or parallel == "fsdp":
        return compiled
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(compiled, device_ids=ids)


@contextlib.contextmanager
def gradient_sync(runner: nn.Module, model: nn.Module, sync: bool) -> Iterator[None]:
    """Synchronise gradients in the backward pass inside this block only when `sync` (the last micro-step)."""
    if is_sharded(model):  # FSDP2
        model.set_requires_gradient_sync(sync)
        yield
    elif not sync and hasattr(runner, "no_sync"):  # DDP
        with runner.no_sync():
            yield
    else:
        yield


def whole_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a sharded one (a DTensor; every rank gets it), or `t` itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def shard_like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`full` sharded as `param` is (each rank keeps its own part, no communication), or `full` itself."""
    if not hasattr(param, "device_mesh"):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)


def _full(cpu_offload: bool = True) -> Any:
    """Options for whole (unsharded) state dicts; with `cpu_offload`, on the CPU of rank 0 only."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 has sharded `model`'s parameters."""
    return hasattr(model, "set_requires_gradient_sync")


def full_model_state(model: nn.Module, world: World) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU on rank 0 (gathered from every rank when sharded); {} elsewhere.

    Every rank must call it when the model is sharded."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(model, options=_full())
        return {k: v.contiguous() for k, v in state.items()} if world.is_main else {}
    from lmtrain.checkpoint import model_state

    return model_state(model) if world.is_main else {}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> dict[str, Any]:
    """The optimizer's whole state keyed by parameter name, on the CPU on rank 0; {} elsewhere.

    Keyed by name, it loads into any number of ranks, sharded or not. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_full())
    return state if world.is_main else {}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimizer state: keyed by parameter name (any world size), or by index (lmtrain < 0.3)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    if any(isinstance(key, int) for key in state.get("state", {})) or _indexed_groups(state):
        state = _keyed_by_name(model, optimizer, state)
    set_optimizer_state_dict(model, optimizer, state, options=_full(cpu_offload=False))


def _indexed_groups(state: dict[str, Any]) -> bool:
    groups = state.get("param_groups", [])
    return bool(groups) and any(isinstance(p, int) for g in groups for p in g["params"])


def _keyed_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """An index-keyed `optimizer.state_dict()` keyed by parameter name instead, matched by group and position."""
    names = {id(p): n for n, p in model.named_parameters()}
    state_out: dict[str, Any] = {}
    groups_out = []
    for saved, live in zip(state["param_groups"], optimizer.param_groups, strict=True):
        fqns = [names[id(p)] for p in live["params"]]
        for index, fqn in zip(saved["params"], fqns, strict=True):
            if index in state["state"]:
                state_out[fqn] = state["state"][index]
        groups_out.append({**saved, "params": fqns})
    return {"state": state_out, "param_groups": groups_out}


COLLECTIVE_ERRORS = ("gloo", "nccl", "connection closed by peer", "connection reset", "timed out", "processgroup")
"""Words in the errors a collective raises when another rank is gone (gloo raises a plain RuntimeError)."""


def is_collective_failure(exc: BaseException) -> bool:
    """Whether `exc` says a collective failed (a peer died, hung or closed its connection)."""
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in COLLECTIVE_ERRORS)
    )


def lost_peer(world: World, exc: BaseException) -> str | None:
    """Why another rank stopped, when `exc` is this rank's collective failing because of it (the error that rank
    left, or that it stopped answering); None when `exc` is this rank's own failure."""
    if not world.distributed:
        return None
    collective = is_collective_failure(exc)
    peer = world.peer_failure(wait_s=2.0 if collective else 0.0)
    if peer is None and collective:
        return f"another rank stopped answering ({str(exc).strip().splitlines()[0][:200]})"
    return peer


@contextlib.contextmanager
def failure_guard(world: World) -> Iterator[None]:
    """Turn one rank's failure into every rank's: a rank that raises leaves its error for the others; a rank whose
    collective fails because another rank stopped raises TrainingFailed naming that rank's error."""
    if not world.distributed:
        yield
        return
    try:
        yield
    except LmtrainError as exc:
        world.report_failure(str(exc))
        raise
    except Exception as exc:
        peer = lost_peer(world, exc)
        if peer is None:
            world.report_failure(f"{type(exc).__name__}: {exc}")
            raise
        raise TrainingFailed(
            f"rank {world.rank} stopped because {peer}; every rank stopped (a rank waits at most --dist-timeout "
            f"{world.timeout_s:g} s for the others)"
        ) from None
