"""Load a published or saved checkpoint of any architecture by Hub id or local path.

BERT, RoBERTa, ModernBERT and Avey-B go through the transformers Auto classes. NeoBERT
checkpoints saved by this package do too. The published NeoBERT (``chandar-lab/NeoBERT``)
ships remote code with its own parameter names: :func:`load_baseline` reads its
``config.json`` with our :class:`NeoBERTConfig` (which understands its keys), renames its
weights with :mod:`aveyb.baselines.neobert.convert` and loads them into our classes, so no
remote code runs. ``trust_remote_code=True`` bypasses all this and returns the authors' own
classes (their heads and outputs, not ours).
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


def load_published_neobert(name_or_path: str, head: str = "masked_lm", dtype=None, **kwargs):
    """The published NeoBERT checkpoint in our classes (weights renamed, no remote code)."""
    from aveyb.architectures import auto_class
    from aveyb.baselines.neobert import NeoBERTConfig
    from aveyb.baselines.neobert.convert import convert_published_state_dict

    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs}
    config = NeoBERTConfig.from_pretrained(name_or_path, **hub_kwargs, **kwargs)
    model = auto_class(head).from_config(config)
    state = convert_published_state_dict(read_state_dict(name_or_path, **hub_kwargs))
    if head == "base":
        state = {k[len("neobert."):]: v for k, v in state.items() if k.startswith("neobert.")}
    expected = set(model.state_dict())
    state = {k: v for k, v in state.items() if k in expected}
    missing = model.load_state_dict(state, strict=False).missing_keys
    encoder_missing = [k for k in missing if k.startswith("neobert.") or head == "base"]
    if encoder_missing:
        raise KeyError(f"the checkpoint lacks encoder weights: {encoder_missing[:5]}")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def load_baseline(name_or_path: str, head: str = "masked_lm", **kwargs):
    """A checkpoint of any architecture, by Hub id or local path, with the chosen ``head``.

    ``head`` is one of ``base``, ``masked_lm``, ``sequence_classification``,
    ``token_classification``, ``question_answering``; ``kwargs`` go to ``from_pretrained``
    (e.g. ``num_labels=3``, ``dtype=torch.bfloat16``, ``revision=…``).
    """
    from aveyb.architectures import auto_class, register_all

    register_all()
    auto = auto_class(head)
    if kwargs.get("trust_remote_code"):
        return auto.from_pretrained(name_or_path, **kwargs)
    from transformers import AutoConfig

    hub_kwargs = {k: kwargs[k] for k in _HUB_KEYS if k in kwargs}
    config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    if config.model_type == "neobert":
        from aveyb.baselines.neobert.convert import is_published_neobert_state_dict

        names = _weight_names(name_or_path, hub_kwargs)
        if names is None:
            names = list(read_state_dict(name_or_path, **hub_kwargs))
        if is_published_neobert_state_dict(names):
            return load_published_neobert(name_or_path, head=head, **kwargs)
    return auto.from_pretrained(name_or_path, **kwargs)
