"""How the model is spread over the ranks: DDP or FSDP2 wrapping (with compile), gradient synchronisation, and whole
state dicts gathered from shards and loaded back into any number of ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from lmtrain.distributed.world import World
from lmtrain.runtime import DTYPES
from lmtrain.train_config import Parallel


def wrap_model(
    model: nn.Module,
    world: World,
    parallel: Parallel,
    compile: bool,
    dtype: str = "fp32",
    *,
    activation_checkpointing: bool = False,
) -> nn.Module:
    """The module the training step calls: each block recomputes its activations in the backward pass
    (`activation_checkpointing`; parameter names unchanged), FSDP2 shards (per block, then the root) in place, DDP
    wraps, compile compiles; one process without torchrun only compiles. Checkpoints always come from `model`."""
    if activation_checkpointing:
        from torch.distributed._composable import checkpoint

        for block in model.blocks():
            checkpoint(block)  # non-reentrant: the RNG state (dropout) is replayed in the recomputation
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
