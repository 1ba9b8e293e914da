"""Process-group set-up under ``torchrun`` and model wrapping (DDP or FSDP2).

With no ``torchrun`` environment everything runs in one process and these helpers are
no-ops. NCCL on CUDA, gloo on CPU (which is how the tests check two ranks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_name: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few scalars over ranks (float64 on the rank's device)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def wrap_model(model: torch.nn.Module, info: DistInfo, strategy: str) -> torch.nn.Module:
    """DDP or FSDP2 (``fully_shard`` on every block of the largest ModuleList, then the root)."""
    if not info.enabled:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        # FSDP2 cannot shard 0-dim parameters (Avey-B's alpha): they stay replicated and
        # their gradients are averaged by sync_replicated_grads after backward.
        replicated = [p for p in model.parameters() if p.dim() == 0]  # same order on every rank
        scalars = set(replicated)
        model._aveyb_replicated = replicated
        blocks = _largest_module_list(model)
        for block in blocks or []:
            fully_shard(block, ignored_params=scalars & set(block.parameters()))
        fully_shard(model, ignored_params=scalars)
        return model
    raise ValueError(f"unknown distributed strategy {strategy!r}")


def sync_replicated_grads(model: torch.nn.Module, info: DistInfo) -> None:
    """Average over ranks the gradients of parameters FSDP2 left unsharded (see wrap_model)."""
    params = [p for p in getattr(model, "_aveyb_replicated", []) if p.grad is not None]
    if not params or not info.enabled:
        return
    flat = torch.stack([p.grad.reshape(()) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    for p, g in zip(params, flat):
        p.grad.copy_(g.reshape(p.grad.shape))


def _largest_module_list(model: torch.nn.Module):
    best = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    return best


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
