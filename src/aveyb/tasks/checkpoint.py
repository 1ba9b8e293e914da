"""Checkpoints of the fine-tuning loop, so that a killed run resumes where it stopped.

Every ``checkpoint_every`` optimiser steps the loop writes ``<run>/checkpoints/step-<N>/``:
model, optimiser, scheduler, the data order and every RNG state, the losses so far and a
fingerprint of the run (its options and data size). A checkpoint is written into a temporary
folder, fsynced and renamed, so a kill while writing leaves the previous one intact. Running the
same command again resumes from the newest checkpoint whose fingerprint matches; the runner
removes the folder once ``results.json`` is written.

The runner says where checkpoints go with :func:`checkpoints_in`; the family modules call the
shared training loop without knowing about it (outside a run nothing is checkpointed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.pt"
_PREFIX = "step-"
_TMP_SUFFIX = ".tmp"

_folder: ContextVar[Path | None] = ContextVar("aveyb_finetune_checkpoints", default=None)


@contextlib.contextmanager
def checkpoints_in(folder: str | os.PathLike | None):
    """Within the block, training loops checkpoint into ``folder`` (None: not at all)."""
    token = _folder.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _folder.reset(token)


def current_folder() -> Path | None:
    return _folder.get()


def fingerprint(cfg, n_features: int, total_steps: int) -> str:
    """What must match for a checkpoint to continue this run: the training options and data size."""
    ignored = {"progress", "save_model", "checkpoint_every", "evaluate_test", "eval_batch_size"}
    options = {k: v for k, v in cfg.to_dict().items() if k not in ignored}
    blob = json.dumps({"options": options, "n_features": n_features, "total_steps": total_steps}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _step_of(path: Path) -> int | None:
    name = path.name
    if not name.startswith(_PREFIX) or name.endswith(_TMP_SUFFIX):
        return None
    try:
        return int(name[len(_PREFIX):])
    except ValueError:
        return None


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``."""
    if not folder.is_dir():
        return None
    done = [(step, p) for p in folder.iterdir() if (step := _step_of(p)) is not None and (p / STATE_FILE).is_file()]
    return max(done)[1] if done else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(folder: Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Write ``state`` as ``folder/step-<step>`` atomically (temp folder, fsync, rename), then drop
    all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{_PREFIX}{step}"
    tmp = folder / f"{_PREFIX}{step}{_TMP_SUFFIX}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(folder)
    older = sorted((s, p) for p in folder.iterdir() if (s := _step_of(p)) is not None and s != step)
    for _, path in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def load(path: Path) -> dict[str, Any]:
    # our own file, holding optimiser and RNG states (not only tensors)
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)


def remove(folder: Path) -> None:
    """Drop every checkpoint of a finished run."""
    shutil.rmtree(folder, ignore_errors=True)
