"""Distributed data parallel helpers for `torchrun`.

`torchrun` (python -m torch.distributed.run) starts one process per device and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With WORLD_SIZE > 1 the
process group is created from those variables: NCCL when training on CUDA, gloo on the
CPU. Without them everything here degrades to a single process (rank 0 of 1).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from maskrcnn import devices

# Rank 0 evaluates alone while the others wait in their next collective call, so the
# group must tolerate a long evaluation.
PROCESS_GROUP_TIMEOUT_MIN = 60


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Rank and world size as `torchrun` describes them in the environment."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def resolve_device(requested: str, info: DistInfo) -> torch.device:
    """train.device as a torch.device; under DDP each process takes cuda:LOCAL_RANK."""
    return devices.resolve_device(requested, where="train.device", local_rank=info.local_rank if info.enabled else None)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (no-op for one process)."""
    info = env_dist_info()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return info
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=info.rank,
        world_size=info.world_size,
        timeout=timedelta(minutes=PROCESS_GROUP_TIMEOUT_MIN),
    )
    return info


def cleanup_distributed(finished: bool = False) -> None:
    """Leave the process group. What still holds it (DDP's reducer) is freed first, while the
    interpreter is whole, and after a normal finish (`finished`) the processes meet at a
    barrier, so none leaves while another still works: without these, a gloo process
    aborted at exit in 3 of 60 runs ('terminate called without an active exception'),
    none of 60 with them (tests/engine/test_ddp.py)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over all processes (a copy; the input is left as it is)."""
    out = values.detach().clone()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    out = values.detach().clone()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def all_gather_objects(obj: object) -> list[object]:
    """Every process's `obj`, in rank order (a one-element list for one process)."""
    if not is_dist():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, src: int = 0) -> object:
    """`obj` from process `src` on every process."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
