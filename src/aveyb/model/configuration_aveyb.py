"""Avey-B configuration (SPEC.md sections 2-6). Defaults are the official base model."""

from __future__ import annotations

from transformers import PretrainedConfig

RANKER_DIRECTIONS = ("left", "both")
SPLIT_WEIGHTINGS = ("min", "max", "none")
LAYER_ARRANGEMENTS = (
    "interleaved_static_first",
    "interleaved_dynamic_first",
    "static_only",
    "dynamic_only",
    "coupled",
)
DYNAMIC_NORMS = ("sum", "softmax", "none", "signed_sum")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")

# Keys a PretrainedConfig carries itself; everything else must be ours.
_AVEYB_KEYS = {
    "vocab_size", "hidden_size", "num_hidden_layers", "split_size", "num_retrieved_splits", "expansion_factor",
    "ranker_direction", "split_weighting", "compression", "layer_arrangement", "dynamic_norm",
    "hidden_act", "eps", "max_position_embeddings", "initializer", "sparse_prediction",
    "classifier_pooling", "kernel_backend",
}
KERNEL_BACKENDS = ("auto", "reference", "triton", "torch")  # "torch": the older name of "reference"


def _register_model_classes() -> None:
    """Make AutoModel* resolve this config to aveyb's classes, on the first config built: every
    AutoModel* path builds the config before it looks its class up, and importing the classes
    (transformers.PreTrainedModel) is too slow to do in ``import aveyb``."""
    try:
        from aveyb.model.auto import register_auto_classes
    except ImportError:  # this file as a checkpoint's remote code, where aveyb is not installed
        return
    register_auto_classes()


def _old_top_k(num_retrieved_splits, kwargs: dict) -> int:
    """k from ``num_retrieved_splits``, else from ``top_k``, its name until the rename (config.json
    files and code written before); 3 when neither is given. ``top_k`` is dropped from ``kwargs``:
    next to ``num_retrieved_splits`` it is generation's sampling setting (transformers 4.x writes
    its default, 50, into every config), which an encoder has no use for."""
    old = kwargs.pop("top_k", None)
    if num_retrieved_splits is not None:
        return num_retrieved_splits
    return 3 if old is None else old


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"AveyBConfig.{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"AveyBConfig.{name}={value!r} must be an integer >= {minimum}")


class AveyBConfig(PretrainedConfig):
    """Configuration of an Avey-B encoder.

    Names follow SPEC.md: ``split_size`` is S, ``num_retrieved_splits`` is k (the retrieved splits),
    ``hidden_size`` is d. ``top_k``, its name before, collided with generation's ``top_k``; a saved
    config.json or code that still says ``top_k`` is read as ``num_retrieved_splits``. The
    ablation switches (``ranker_direction``, ``split_weighting``, ``compression``,
    ``layer_arrangement``, ``dynamic_norm``) default to the official behaviour.
    ``kernel_backend``: "auto" uses the fused Triton kernels on CUDA when they support the
    configuration and falls back to plain PyTorch otherwise; "reference" (or its older name
    "torch") forces the reference; "triton" requires the kernels. The model resolves it once, when
    it is built or loaded; ``model.set_kernel_backend(name, options)`` switches it later.
    ``kernel_backend`` and ``sparse_prediction`` are run-time settings: ``save_pretrained`` does
    not write them, so a checkpoint loads with the defaults.
    ``max_position_embeddings`` is the training context; Avey-B has no positional limit and
    runs on longer inputs.
    """

    model_type = "aveyb"

    def __init__(
        self,
        vocab_size: int = 50368,
        hidden_size: int = 768,
        num_hidden_layers: int = 30,
        split_size: int = 256,
        num_retrieved_splits: int | None = None,
        expansion_factor: int = 4,
        ranker_direction: str = "left",
        split_weighting: str = "min",
        compression: bool = True,
        layer_arrangement: str = "interleaved_static_first",
        dynamic_norm: str = "sum",
        hidden_act: str = "gelu",
        eps: float = 1e-12,
        max_position_embeddings: int = 2048,
        initializer: str = "xavier_normal",
        sparse_prediction: bool = False,
        classifier_pooling: str = "mean",
        kernel_backend: str = "auto",
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        mask_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        # A typo in code is an error; a saved config.json keeps keys this version does not know
        # (from_dict), as PretrainedConfig does, so a checkpoint of a newer version still loads.
        strict = kwargs.pop("strict_keys", True)
        num_retrieved_splits = _old_top_k(num_retrieved_splits, kwargs)
        unknown = set(kwargs) - _HF_KEYS
        if strict and unknown:
            raise ValueError(
                f"AveyBConfig got unknown keys {sorted(unknown)}; Avey-B keys are {sorted(_AVEYB_KEYS)}"
            )
        if unknown:
            from transformers.utils import logging as hf_logging

            hf_logging.get_logger(__name__).warning(
                f"AveyBConfig: keeping keys this version of aveyb does not know: {sorted(unknown)}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.split_size = split_size
        self.num_retrieved_splits = num_retrieved_splits
        self.expansion_factor = expansion_factor
        self.ranker_direction = ranker_direction
        self.split_weighting = split_weighting
        self.compression = compression
        self.layer_arrangement = layer_arrangement
        self.dynamic_norm = dynamic_norm
        self.hidden_act = hidden_act
        self.eps = eps
        self.max_position_embeddings = max_position_embeddings
        self.initializer = initializer
        self.sparse_prediction = sparse_prediction
        self.classifier_pooling = classifier_pooling
        self.kernel_backend = kernel_backend
        self.mask_token_id = mask_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_options()
        _register_model_classes()

    def validate_options(self) -> None:
        """Raise ``ValueError`` naming the field for any impossible value."""
        _check_int("vocab_size", self.vocab_size, 1)
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("num_hidden_layers", self.num_hidden_layers, 0)
        _check_int("split_size", self.split_size, 1)
        _check_int("num_retrieved_splits", self.num_retrieved_splits, 0)
        _check_int("expansion_factor", self.expansion_factor, 2)
        if self.expansion_factor % 2:
            raise ValueError("AveyBConfig.expansion_factor must be even: Z splits into two equal halves")
        _check_choice("ranker_direction", self.ranker_direction, RANKER_DIRECTIONS)
        _check_choice("split_weighting", self.split_weighting, SPLIT_WEIGHTINGS)
        _check_choice("compression", self.compression, (True, False))
        _check_choice("layer_arrangement", self.layer_arrangement, LAYER_ARRANGEMENTS)
        _check_choice("dynamic_norm", self.dynamic_norm, DYNAMIC_NORMS)
        _check_choice("hidden_act", self.hidden_act, ACTIVATIONS)
        _check_choice("initializer", self.initializer, ("xavier_normal",))
        _check_choice("classifier_pooling", self.classifier_pooling, ("mean",))
        _check_choice("kernel_backend", self.kernel_backend, KERNEL_BACKENDS)
        if not (isinstance(self.eps, float) and 0 < self.eps < 1):
            raise ValueError(f"AveyBConfig.eps={self.eps!r} must be a float in (0, 1)")
        _check_int("max_position_embeddings", self.max_position_embeddings, 1)
        for name in ("pad_token_id", "mask_token_id", "eos_token_id", "bos_token_id"):
            value = getattr(self, name, None)
            if value is not None and not (0 <= value < self.vocab_size):
                raise ValueError(f"AveyBConfig.{name}={value} is outside the vocabulary [0, {self.vocab_size})")

    # Settings of a run, not of the model: never written to config.json, and ignored in one that
    # has them. A pretraining run sets sparse_prediction=True (masked-LM logits only at labelled
    # positions, shape (n_labelled, V)); a checkpoint that kept it would surprise every user.
    RUNTIME_KEYS = ("sparse_prediction", "kernel_backend")

    def to_dict(self) -> dict:
        out = super().to_dict()
        for key in self.RUNTIME_KEYS:
            out.pop(key, None)
        return out

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        saved = {k: v for k, v in config_dict.items() if k not in cls.RUNTIME_KEYS}
        saved["strict_keys"] = False
        return super().from_dict(saved, **kwargs)

    # ---- derived sizes -------------------------------------------------------------
    @property
    def window_size(self) -> int:
        """L = (k+1)·S: rows of an extended window."""
        return (self.num_retrieved_splits + 1) * self.split_size

    @property
    def mixer_size(self) -> int:
        """Rows a contextualization layer mixes: S with compression, L without."""
        return self.split_size if self.compression else self.window_size

    def layer_kinds(self) -> list[str]:
        """'static', 'dynamic' or 'coupled' for every layer, from ``layer_arrangement``."""
        n, arrangement = self.num_hidden_layers, self.layer_arrangement
        if arrangement == "interleaved_static_first":
            return ["static" if i % 2 == 0 else "dynamic" for i in range(n)]
        if arrangement == "interleaved_dynamic_first":
            return ["dynamic" if i % 2 == 0 else "static" for i in range(n)]
        return [{"static_only": "static", "dynamic_only": "dynamic", "coupled": "coupled"}[arrangement]] * n


# Keys that transformers itself may pass through a config (save/load, generation, heads).
_HF_KEYS = set(PretrainedConfig().to_dict()) | {
    "id2label", "label2id", "num_labels", "problem_type", "architectures", "auto_map",
    "transformers_version", "torch_dtype", "dtype", "name_or_path", "_name_or_path",
    "finetuning_task", "return_dict", "output_hidden_states", "output_attentions",
    "torchscript", "use_cache", "model_type", "classifier_dropout", "_attn_implementation",
    "attn_implementation", "_attn_implementation_internal", "_commit_hash",
    "tokenizer_class",  # a transformers 4.x config key that 5.x configs no longer hold by default
    "aveyb_task",  # a fine-tuned model's task family and input settings (aveyb.tasks.export)
}

PRESETS: dict[str, dict] = {
    # Runs in seconds on a CPU; also the CI model.
    "tiny": dict(hidden_size=64, num_hidden_layers=4, split_size=16, num_retrieved_splits=2, max_position_embeddings=256),
    # A whole study on a 2-core CPU: 7 layers (4 static + 3 dynamic), 8 splits of a 256-token sequence,
    # as the base model has 8 splits of 2,048; 0.82M non-embedding parameters.
    "micro": dict(hidden_size=128, num_hidden_layers=7, split_size=32, num_retrieved_splits=3, max_position_embeddings=512),
    # About 36M parameters with a 50k vocabulary: for single-GPU experiments.
    "mini": dict(hidden_size=384, num_hidden_layers=16, split_size=256, num_retrieved_splits=3, max_position_embeddings=2048),
    # The official base model: 163.9M parameters with vocab 50,368.
    "base": dict(hidden_size=768, num_hidden_layers=30, split_size=256, num_retrieved_splits=3, max_position_embeddings=2048),
}


def preset_config(name: str, **overrides) -> AveyBConfig:
    """Build the config of a named preset (``tiny``, ``mini``, ``base``), with overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown Avey-B preset {name!r}; choose one of {sorted(PRESETS)}")
    return AveyBConfig(**{**PRESETS[name], **overrides})
