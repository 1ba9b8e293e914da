"""Process-group set-up under ``torchrun``, model wrapping (DDP or FSDP2), and full state dicts.

With no ``torchrun`` environment everything runs in one process and these helpers are
no-ops. NCCL on CUDA, gloo on CPU (which is how the tests check two ranks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aveyb.engine import pick_device


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

        # FSDP2 shards every parameter along dim 0, so each is sharded and has its gradients
        # reduced by FSDP2 itself (Avey-B's one-number alpha and tau have shape (1,) for this)
        scalars = [name for name, p in model.named_parameters() if p.dim() == 0]
        if scalars:
            raise ValueError(f"FSDP2 cannot shard 0-dim parameters {scalars[:4]}; give them shape (1,)")
        for block in _largest_module_list(model) or []:
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"unknown distributed strategy {strategy!r}")


def _largest_module_list(model: torch.nn.Module):
    best = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    return best


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


# ---- full (unsharded) state dicts, for checkpoints that load at any number of ranks --------

def _sharded(strategy: str, info: DistInfo) -> bool:
    return strategy == "fsdp2" and info.enabled


def full_state_dicts(model, optimizer, strategy: str, info: DistInfo, with_optimizer: bool = True):
    """Full model and optimizer state dicts on CPU (gathered from the shards under FSDP2)."""
    if _sharded(strategy, info):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd = get_model_state_dict(model, options=options)
        optim_sd = get_optimizer_state_dict(model, optimizer, options=options) if with_optimizer else None
        return model_sd, optim_sd
    model_sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return model_sd, (optimizer.state_dict() if with_optimizer else None)


def load_model_state(model, state: dict, strategy: str, info: DistInfo) -> None:
    if _sharded(strategy, info):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)


def load_optimizer_state(model, optimizer, state: dict, strategy: str, info: DistInfo) -> None:
    if _sharded(strategy, info):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)
