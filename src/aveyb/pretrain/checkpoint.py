"""Atomic, complete training checkpoints.

A checkpoint is a directory ``checkpoints/step-00001234/`` holding

* ``model.pt``: the model's full state dict (``torch.load(weights_only=True)``);
* ``optimizer.pt``: the optimizer's state dict (same);
* ``trainer_state.json``: step, tokens seen, data position, run config;
* ``rng-rank{r}.pt``: every RNG state of every rank (python, numpy, torch, CUDA);
* ``tokenizer/``: the tokenizer (``save_pretrained``).

It is written into a hidden temporary directory and moved into place with ``os.replace``,
then ``checkpoints/latest`` (a one-line file, also replaced atomically) names it. A crash
at any moment leaves either the previous or the new checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

LATEST = "latest"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_lists(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_lists(state) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _to_tuples(obj):
    if isinstance(obj, list):
        return tuple(_to_tuples(o) for o in obj)
    return obj


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(root: Path, step: int, *, model_state: dict, optimizer_state: dict, trainer_state: dict,
                    tokenizer, rank: int, world_size: int, keep: int = 2, model_config=None) -> Path | None:
    """Write checkpoint ``step`` under ``root`` atomically. Every rank calls it (RNG states).

    ``model_state`` and ``optimizer_state`` matter on rank 0 only. ``model_config`` (a transformers
    config) is saved as ``config.json``, so the checkpoint says what model its weights belong to.
    Returns the directory.
    """
    root = Path(root)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    _barrier(world_size)
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    _fsync_file(tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        torch.save(model_state, tmp / "model.pt")
        torch.save(optimizer_state, tmp / "optimizer.pt")
        for name in ("model.pt", "optimizer.pt"):
            _fsync_file(tmp / name)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp / "tokenizer"))
        if model_config is not None:
            model_config.save_pretrained(str(tmp))
        _write_json(tmp / "trainer_state.json", {**trainer_state, "step": step, "world_size": world_size})
    _barrier(world_size)
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = root / (LATEST + ".tmp")
        latest_tmp.write_text(final.name + "\n")
        os.replace(latest_tmp, root / LATEST)
        _prune(root, keep)
    _barrier(world_size)
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _barrier(world_size: int) -> None:
    if world_size > 1 and dist.is_initialized():
        dist.barrier()


def is_complete(path: Path) -> bool:
    return (path / "trainer_state.json").is_file() and (path / "model.pt").is_file()


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (the ``latest`` file, else a scan)."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if is_complete(candidate):
            return candidate
    steps = sorted((p for p in root.glob("step-*") if p.is_dir() and is_complete(p)), reverse=True)
    return steps[0] if steps else None


def load_checkpoint(path: Path, rank: int, map_location="cpu") -> dict:
    """Read a checkpoint: model and optimizer state dicts, trainer state, this rank's RNG states."""
    path = Path(path)
    with open(path / "trainer_state.json") as fh:
        trainer_state = json.load(fh)
    rng_file = path / f"rng-rank{rank}.pt"
    return {
        "model": torch.load(path / "model.pt", map_location=map_location, weights_only=True),
        "optimizer": torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True),
        "trainer_state": trainer_state,
        "rng": torch.load(rng_file, weights_only=True) if rng_file.is_file() else None,
    }
