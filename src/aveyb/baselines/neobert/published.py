"""The published NeoBERT checkpoint (``chandar-lab/NeoBERT``) loaded into our NeoBERT classes.

The published checkpoint ships remote code with its own parameter names; our NeoBERT
classes recognise such a checkpoint in ``from_pretrained`` (so the Auto classes, and the
fine-tuning harness, load it too), read its ``config.json`` with our
:class:`NeoBERTConfig` (which understands its keys) and rename its weights with
:mod:`aveyb.baselines.neobert.convert`; no remote code runs. ``trust_remote_code=True``
loads the authors' own classes instead (their heads and outputs, not ours).
"""

from __future__ import annotations

import json

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_HUB_KEYS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")


def _resolve(name_or_path: str, filename: str, hub_kwargs: dict):
    from transformers.utils import cached_file

    return cached_file(
        name_or_path, filename, _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False, **hub_kwargs,
    )


def read_state_dict(name_or_path: str, **hub_kwargs) -> dict:
    """All tensors of a checkpoint (single or sharded safetensors, or ``pytorch_model.bin``)."""
    import torch
    from safetensors.torch import load_file

    for filename in _WEIGHT_FILES:
        path = _resolve(name_or_path, filename, hub_kwargs)
        if path is None:
            continue
        if filename.endswith(".index.json"):
            with open(path) as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(load_file(_resolve(name_or_path, shard, hub_kwargs)))
            return state
        if filename.endswith(".safetensors"):
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no weights ({', '.join(_WEIGHT_FILES)}) found for {name_or_path!r}")


def _weight_names(name_or_path: str, hub_kwargs: dict) -> list[str] | None:
    """Parameter names without reading the tensors where the format allows it."""
    from safetensors import safe_open

    path = _resolve(name_or_path, "model.safetensors", hub_kwargs)
    if path is not None:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    path = _resolve(name_or_path, "model.safetensors.index.json", hub_kwargs)
    if path is not None:
        with open(path) as handle:
            return list(json.load(handle)["weight_map"])
    return None


def is_published_neobert_checkpoint(name_or_path, hub_kwargs: dict | None = None) -> bool:
    """True when ``name_or_path`` holds weights with the published NeoBERT's parameter names."""
    from aveyb.baselines.neobert.convert import is_published_neobert_state_dict

    hub_kwargs = hub_kwargs or {}
    try:
        names = _weight_names(str(name_or_path), hub_kwargs)
        if names is None:
            names = list(read_state_dict(str(name_or_path), **hub_kwargs))
    except (OSError, FileNotFoundError, ValueError):
        return False  # let from_pretrained report the problem
    return is_published_neobert_state_dict(names)


# from_pretrained keywords the conversion path understands besides config fields.
_IGNORED_LOAD_KEYS = ("trust_remote_code", "low_cpu_mem_usage", "use_safetensors", "attn_implementation",
                      "_from_auto", "_from_pipeline", "_commit_hash", "adapter_kwargs")


def load_published_neobert(model_class, name_or_path, config=None, dtype=None, torch_dtype=None,
                           device_map=None, **kwargs):
    """The published NeoBERT checkpoint as ``model_class`` (ours): weights renamed, no remote code.

    Called by ``NeoBERTPreTrainedModel.from_pretrained`` (so the Auto classes take this path
    too); other keywords are config fields such as ``num_labels``.
    """
    import torch

    from aveyb.baselines.neobert import NeoBERTConfig
    from aveyb.baselines.neobert.convert import convert_published_state_dict

    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs}
    for key in _IGNORED_LOAD_KEYS:
        kwargs.pop(key, None)
    if config is None:
        config = NeoBERTConfig.from_pretrained(name_or_path, **hub_kwargs, **kwargs)
    else:
        for key, value in kwargs.items():
            setattr(config, key, value)
    model = model_class(config)
    state = convert_published_state_dict(read_state_dict(str(name_or_path), **hub_kwargs))
    prefix = model.base_model_prefix + "."
    if not hasattr(model, model.base_model_prefix):  # the bare encoder
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = set(model.state_dict())
    missing = model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False).missing_keys
    encoder_missing = [k for k in missing if k.startswith(prefix) or not hasattr(model, model.base_model_prefix)]
    if encoder_missing:
        raise KeyError(f"the checkpoint lacks encoder weights: {encoder_missing[:5]}")
    dtype = dtype if dtype is not None else torch_dtype
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    if isinstance(device_map, (str, torch.device)) and device_map != "auto":
        model = model.to(device_map)
    return model.eval()
