"""Distributed training plumbing: one process per device under `torchrun` (DDP).

`torchrun --nproc_per_node N -m simulator.cli train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
without them everything runs as a single process. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group if launched by torchrun; pick this process's device.

    `device` is "cpu", "cuda" or "auto" (cuda when available).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device("cpu"))


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP around `model` when there is more than one process (gradients are averaged in backward)."""
    if info.world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def all_mean(value: float, info: DistInfo) -> float:
    """The mean of a scalar over every process (for logging)."""
    if info.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group: every rank meets at a barrier first, because gloo aborts a
    process (SIGABRT) whose group is destroyed while a peer still has work in flight."""
    if info.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
