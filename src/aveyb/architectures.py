"""The architecture registry: build, count or load any architecture of this package by name.

``aveyb pretrain --arch``, studies, the fine-tuning harness and the benchmarks go through
:func:`build_masked_lm` / :func:`build_model`, so every architecture is trained and measured
the same way. An architecture is a name and a function ``(preset, vocab_size, **overrides) ->
transformers config``; Avey-B is registered here, the four baselines register themselves in
:mod:`aveyb.baselines`. Your own architecture joins them with :func:`register_architecture`
(its config's model type must be known to the transformers Auto classes).

Sizes: ``tiny``, ``micro``, ``mini``, ``base`` are Avey-B's presets; each baseline's preset of
the same name has Avey-B's width and context and a depth chosen to match its non-embedding
parameter count (see ``docs/baselines.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

SIZE_PRESETS = ("tiny", "micro", "mini", "base")  # Avey-B's presets (aveyb.config.PRESETS), kept import-free
HEADS = ("base", "masked_lm", "sequence_classification", "token_classification", "question_answering")

_AUTO_CLASSES = {
    "base": "AutoModel",
    "masked_lm": "AutoModelForMaskedLM",
    "sequence_classification": "AutoModelForSequenceClassification",
    "token_classification": "AutoModelForTokenClassification",
    "question_answering": "AutoModelForQuestionAnswering",
}

# Modules whose import registers more built-in architectures; read on the first lookup, so that
# importing this registry imports neither the models nor transformers.
_BUILTIN_MODULES = ("aveyb.baselines",)


@dataclass(frozen=True)
class Architecture:
    name: str
    build_config: Callable[..., object]   # (preset, vocab_size, **overrides) -> a transformers config
    description: str = ""


_REGISTRY: dict[str, Architecture] = {}
_BUILTINS_LOADED = False


def register_architecture(name: str, build_config: Callable[..., object], description: str = "") -> Architecture:
    """Add an architecture (or replace one of the same name); returns its entry."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an architecture needs a non-empty name, got {name!r}")
    if not callable(build_config):
        raise TypeError(f"architecture {name!r}: build_config must be callable (preset, vocab_size, **overrides)")
    entry = Architecture(name, build_config, description)
    _REGISTRY[name] = entry
    return entry


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _BUILTINS_LOADED = True


def architectures() -> dict[str, Architecture]:
    """Every registered architecture by name: Avey-B, the four baselines, then any of your own."""
    _load_builtins()
    return dict(_REGISTRY)


def architecture_names() -> tuple[str, ...]:
    return tuple(architectures())


def get_architecture(name: str) -> Architecture:
    registry = architectures()
    if name not in registry:
        raise ValueError(f"unknown architecture {name!r}; choose one of {list(registry)}")
    return registry[name]


def _avey_b_config(preset: str, vocab_size: int, **overrides):
    from aveyb.config import preset_config

    return preset_config(preset, vocab_size=vocab_size, **overrides)


register_architecture("avey-b", _avey_b_config, "Avey-B (Acharya & Hammoud, 2026): a ranker and split-wise "
                      "static/dynamic layers, no attention (SPEC.md)")


def register_all() -> None:
    """Make the Auto classes know Avey-B and NeoBERT (idempotent)."""
    from aveyb.model.auto import register_auto_classes

    register_auto_classes()


def auto_class(head: str):
    """The transformers Auto class of a head name (``masked_lm``, ``sequence_classification``, …)."""
    if head not in _AUTO_CLASSES:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    import transformers

    register_all()
    return getattr(transformers, _AUTO_CLASSES[head])


def build_config(arch: str, preset: str, vocab_size: int, **overrides):
    """The transformers config of ``arch`` at size ``preset`` with the given vocabulary."""
    entry = get_architecture(arch)
    if preset not in SIZE_PRESETS:
        raise ValueError(f"unknown size preset {preset!r}; choose one of {list(SIZE_PRESETS)}")
    return entry.build_config(preset, vocab_size=vocab_size, **overrides)


def build_model(arch: str, preset: str, vocab_size: int, head: str = "masked_lm", **overrides):
    """A freshly initialised model of ``arch`` with ``head`` (``AutoModelFor….from_config``).

    Config fields go in ``overrides`` (e.g. ``num_labels=3``, ``pad_token_id=…``).
    """
    auto = auto_class(head)
    return auto.from_config(build_config(arch, preset, vocab_size, **overrides))


def build_masked_lm(arch: str, preset: str, vocab_size: int, **overrides):
    """A freshly initialised masked-LM model (``AutoModelForMaskedLM.from_config``)."""
    return build_model(arch, preset, vocab_size, head="masked_lm", **overrides)


def load_pretrained(name_or_path: str, head: str = "masked_lm", **kwargs):
    """A published or saved checkpoint of any architecture, by Hub id or local path, with ``head``.

    ``head`` is one of :data:`HEADS`; ``kwargs`` go to ``from_pretrained`` (e.g. ``num_labels=3``,
    ``dtype=torch.bfloat16``, ``revision=…``). The published NeoBERT is converted on the fly
    (:mod:`aveyb.baselines.neobert.published`); ``trust_remote_code=True`` loads its authors'
    classes instead.
    """
    return auto_class(head).from_pretrained(name_or_path, **kwargs)
