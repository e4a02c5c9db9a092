"""Data-parallel training under `torchrun --nproc_per_node N` (PyTorch DistributedDataParallel).

Nothing changes for a single process: without torchrun's WORLD_SIZE > 1 every helper here is a
no-op. Under torchrun, each process trains on its share of every batch (the batch is drawn and
augmented identically on all ranks from the shared seed, then split by rank), DDP averages the
gradients — nccl on GPUs, with synchronised BatchNorm; gloo on CPUs, where BatchNorm statistics
stay per process — and only rank 0 writes the run folder.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup() -> None:
    """Join the process group torchrun describes (once); nccl when CUDA is present, else gloo."""
    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """This process's device: its own GPU under torchrun on CUDA."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def cpu_threads_share(cores: int) -> int:
    """Intra-op threads per process so the processes on one machine share its cores."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size())))
    return max(1, cores // max(per_node, 1))


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module to train: DDP around `model` under torchrun, `model` itself otherwise. The
    returned module shares parameters with `model`, so checkpoints are taken from `model`."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DDP(model, device_ids=[device.index])
    return DDP(model)


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a batch (every world_size-th row, starting at rank)."""
    return x if world_size() == 1 else x[rank()::world_size()]
