"""Load weights of the authors' public Avey-B implementation into aveyb models.

The official parameter names (SPEC.md section 7) are ours too, so conversion is: find the
encoder's prefix, infer the architecture from tensor shapes (or the official config.json),
check every tensor, and load. Anything that does not fit is reported in one error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the model load on first use: ``aveyb --help`` imports this module
    from torch import Tensor

    from aveyb.model import AveyBConfig

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
# Official config.json names we understand, mapped to ours (shapes win where both exist).
_OFFICIAL_CONFIG_KEYS = {
    "eps": "eps", "epsilon": "eps", "rms_norm_eps": "eps", "dynamic_norm": "dynamic_norm",
    "ranker_direction": "ranker_direction", "split_weighting": "split_weighting",
    "layer_arrangement": "layer_arrangement", "max_position_embeddings": "max_position_embeddings",
    "context_len": "max_position_embeddings", "context_length": "max_position_embeddings",
    "pad_token_id": "pad_token_id", "eos_token_id": "eos_token_id", "mask_token_id": "mask_token_id",
}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Tensors from a .safetensors / .bin / .pt file or a checkpoint directory, plus its config.json."""
    path = Path(path)
    config: dict = {}
    if path.is_dir():
        if (path / "config.json").exists():
            config = json.loads((path / "config.json").read_text())
        found = [path / name for name in _WEIGHT_FILES if (path / name).exists()]
        if not found:
            raise FileNotFoundError(f"no weights in {path}: expected one of {list(_WEIGHT_FILES)}")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), config
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return dict(state), config


def _strip_encoder_prefix(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split into encoder tensors (prefix removed) and head tensors (``dense.*``, ``classifier.*``...)."""
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}  # torch.compile's wrapper
    embed_keys = [k for k in state if k == "embed.weight" or k.endswith(".embed.weight")]
    if len(embed_keys) != 1:
        raise ValueError(f"expected exactly one '*embed.weight' tensor, found {embed_keys or 'none'}")
    prefix = embed_keys[0][: -len("embed.weight")]
    encoder, head = {}, {}
    for key, value in state.items():
        if key.startswith(prefix) and (key[len(prefix):].split(".")[0] in ("embed", "ranker", "layers")):
            encoder[key[len(prefix):]] = value
        else:
            head[key] = value
    return encoder, head


def infer_config(encoder: dict[str, Tensor], official_config: dict | None = None, **overrides) -> AveyBConfig:
    """Vocabulary, width, layers, S, k, compression and arrangement from the tensors' shapes."""
    vocab_size, width = encoder["embed.weight"].shape
    layer_ids = sorted({int(m.group(1)) for k in encoder if (m := _LAYER_KEY.match(k))})
    has_p = [f"layers.{i}.spatial_proj" in encoder for i in layer_ids]
    kwargs: dict = {}
    for key, ours in _OFFICIAL_CONFIG_KEYS.items():
        if official_config and key in official_config and official_config[key] is not None:
            kwargs[ours] = official_config[key]
    if "ranker.down_proj" in encoder:
        split_size, window = encoder["ranker.down_proj"].shape
        kwargs.update(compression=True, split_size=split_size, num_retrieved_splits=window // split_size - 1)
    elif any(has_p):
        window = encoder[f"layers.{layer_ids[has_p.index(True)]}.spatial_proj"].shape[0]
        split_size = int((official_config or {}).get("split_size", overrides.get("split_size", 0)))
        if not split_size:
            raise ValueError("compression is off and S cannot be read from the shapes: pass split_size=")
        kwargs.update(compression=False, split_size=split_size, num_retrieved_splits=window // split_size - 1)
    if layer_ids and "layer_arrangement" not in overrides and "layer_arrangement" not in kwargs:
        kwargs["layer_arrangement"] = _arrangement(has_p)
    if layer_ids:
        enricher = encoder[f"layers.{layer_ids[0]}.enricher.weight"]
        kwargs["expansion_factor"] = enricher.shape[0] // width
    kwargs.update(overrides)
    from aveyb.model.configuration_aveyb import AveyBConfig

    return AveyBConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=len(layer_ids), **kwargs)


def _arrangement(has_p: list[bool]) -> str:
    if all(has_p):
        raise ValueError("every layer has a spatial_proj: pass layer_arrangement='static_only' or 'coupled'")
    if not any(has_p):
        return "dynamic_only"
    if all(p == (i % 2 == 0) for i, p in enumerate(has_p)):
        return "interleaved_static_first"
    if all(p == (i % 2 == 1) for i, p in enumerate(has_p)):
        return "interleaved_dynamic_first"
    raise ValueError(f"layers with a spatial_proj {has_p} match no known layer_arrangement")


def _map_head(head: dict[str, Tensor], model) -> dict[str, Tensor]:
    """Official head tensors keep their names (``dense.*``, ``classifier.*``); tied LM heads are dropped."""
    mapped = {}
    embed = model.get_input_embeddings().weight
    for key, value in head.items():
        name = key.split(".", 1)[1] if key.split(".", 1)[0] in ("model", "avey", "base_model") else key
        if name in ("lm_head.weight", "decoder.weight") and value.shape == embed.shape:
            continue  # the official LM head is tied to the embedding, as ours is
        mapped[name] = value
    return mapped


def _resolve_dtype(torch_dtype, checkpoint_tensor: Tensor):
    """``from_pretrained``'s convention: "auto" (or None) keeps the checkpoint's dtype, else a
    ``torch.dtype`` or its name ("bfloat16", "float32", ...)."""
    import torch

    if torch_dtype is None or torch_dtype == "auto":
        return checkpoint_tensor.dtype
    if isinstance(torch_dtype, str):
        resolved = getattr(torch, torch_dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"torch_dtype={torch_dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16' or 'auto'")
        torch_dtype = resolved
    if not (isinstance(torch_dtype, torch.dtype) and torch_dtype.is_floating_point):
        raise ValueError(f"torch_dtype={torch_dtype!r} must be a floating-point torch dtype or 'auto'")
    return torch_dtype


def load_official(path_or_state_dict, model_class=None, torch_dtype="auto", **config_overrides):
    """An aveyb model (``AveyBForMaskedLM`` by default, or any head class) with official weights.

    ``path_or_state_dict``: a state dict, a weights file, or a directory with ``config.json``.
    ``torch_dtype``: as in ``from_pretrained``: "auto" keeps the checkpoint's dtype (that of its
    embedding), or a ``torch.dtype`` / its name casts to it.
    Raises ``ValueError`` listing missing, unexpected and mis-shaped tensors, and naming the first
    tensor that holds NaN or infinite values (a corrupted file).
    """
    from aveyb.model.layers import upgrade_scalar_shapes
    from aveyb.model.modeling_aveyb import AveyBForMaskedLM, AveyBModel, first_non_finite

    model_class = model_class or AveyBForMaskedLM
    if isinstance(path_or_state_dict, dict):
        state, official_config, source = dict(path_or_state_dict), {}, "the state dict"
    else:
        state, official_config = read_state_dict(path_or_state_dict)
        source = str(path_or_state_dict)
    bad = first_non_finite(state.items())
    if bad is not None:
        raise ValueError(f"{source}: tensor {bad!r} holds NaN or infinite values; the weights are corrupted")
    encoder, head = _strip_encoder_prefix(state)
    upgrade_scalar_shapes(encoder)  # the official alpha and tau are 0-dim; ours have shape (1,)
    dtype = _resolve_dtype(torch_dtype, encoder["embed.weight"])
    config = infer_config(encoder, official_config, **config_overrides)
    model = model_class(config).to(dtype)
    base = model.base_model_prefix
    bare = isinstance(model, AveyBModel)
    ours = {k if bare else f"{base}.{k}": v for k, v in encoder.items()}
    ours.update(_map_head(head, model))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    misshaped = sorted(f"{k}: checkpoint {tuple(ours[k].shape)} vs model {tuple(expected[k].shape)}"
                       for k in set(ours) & set(expected) if ours[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        raise ValueError(
            f"checkpoint does not match {model_class.__name__} ({config.num_hidden_layers} layers, d={config.hidden_size}, "
            f"S={config.split_size}, k={config.num_retrieved_splits}):\n  missing: {missing}\n  unexpected: {unexpected}\n"
            f"  mis-shaped: {misshaped}"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in ours.items()}, strict=True)
    return model


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert an official Avey-B checkpoint to a save_pretrained folder")
    parser.add_argument("checkpoint", help="official weights file or directory")
    parser.add_argument("output_dir")
    parser.add_argument("--tokenizer", help="tokenizer name or path to save beside the model")
    parser.set_defaults(func=_convert_command)


def _convert_command(args) -> int:
    model = load_official(args.checkpoint)
    model.save_pretrained(args.output_dir)
    if args.tokenizer:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(args.output_dir)
    print(f"saved {type(model).__name__} to {args.output_dir}")
    return 0
