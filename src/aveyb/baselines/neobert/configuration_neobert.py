"""NeoBERT configuration (Le Breton et al., "NeoBERT: A Next-Generation BERT", 2025).

Field names follow the published checkpoint ``chandar-lab/NeoBERT`` so that its
``config.json`` loads directly, with two exceptions: the context is
``max_position_embeddings`` (the published ``max_length`` is accepted as an alias, because
``max_length`` is a generation parameter that transformers refuses to save in a model
config), and the published ``dim_head`` / ``kwargs`` entries are derived or dropped.

``intermediate_size`` keeps NeoBERT's meaning: the nominal 4·d width of a GELU MLP. The
SwiGLU feed-forward actually uses ``ffn_size = round_up(int(2·intermediate_size/3), 8)``
(3072 -> 2048 in the published base model), exactly as the original code does.
"""

from __future__ import annotations

from transformers import PretrainedConfig

CLASSIFIER_POOLINGS = ("cls", "mean")

# Keys of the published config that carry no information for us (auto_map points at its remote
# code, which a checkpoint saved by us does not contain).
_PUBLISHED_DROPPED_KEYS = ("dim_head", "kwargs", "rope", "ngpt", "auto_map")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"NeoBERTConfig.{name}={value!r} must be an integer >= {minimum}")


def _check_float(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"NeoBERTConfig.{name}={value!r} must be a number in [{low}, {high}]")


class NeoBERTConfig(PretrainedConfig):
    """Configuration of a NeoBERT encoder. Defaults are the published 250M base model."""

    model_type = "neobert"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 4096,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-5,
        embedding_init_range: float = 0.02,
        decoder_init_range: float = 0.02,
        classifier_init_range: float = 0.02,
        classifier_dropout: float = 0.0,
        classifier_pooling: str = "cls",
        pad_token_id: int | None = 0,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        if "max_length" in kwargs:  # the published config's name for the context
            max_position_embeddings = kwargs.pop("max_length")
        dim_head = kwargs.pop("dim_head", None)
        for key in _PUBLISHED_DROPPED_KEYS:
            kwargs.pop(key, None)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.norm_eps = norm_eps
        self.embedding_init_range = embedding_init_range
        self.decoder_init_range = decoder_init_range
        self.classifier_init_range = classifier_init_range
        self.classifier_dropout = classifier_dropout
        self.classifier_pooling = classifier_pooling
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_options()
        if dim_head is not None and dim_head != self.head_dim:
            raise ValueError(f"NeoBERTConfig: dim_head={dim_head} disagrees with hidden_size/num_attention_heads")
        # AutoModel* find NeoBERT's classes from the first config on (they are slow to import)
        from aveyb.baselines.neobert import register

        register()

    def validate_options(self) -> None:
        """Raise ``ValueError`` naming the field for any impossible value."""
        _check_int("vocab_size", self.vocab_size, 1)
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("num_hidden_layers", self.num_hidden_layers, 0)
        _check_int("num_attention_heads", self.num_attention_heads, 1)
        _check_int("intermediate_size", self.intermediate_size, 2)
        _check_int("max_position_embeddings", self.max_position_embeddings, 1)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"NeoBERTConfig.hidden_size={self.hidden_size} must be divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"NeoBERTConfig: head size {self.head_dim} must be even for rotary embeddings")
        _check_float("rope_theta", self.rope_theta, 1.0, float("inf"))
        _check_float("norm_eps", self.norm_eps, 0.0, 1.0)
        for name in ("embedding_init_range", "decoder_init_range", "classifier_init_range"):
            _check_float(name, getattr(self, name), 0.0, 10.0)
        _check_float("classifier_dropout", self.classifier_dropout, 0.0, 1.0)
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(
                f"NeoBERTConfig.classifier_pooling={self.classifier_pooling!r}; choose one of {list(CLASSIFIER_POOLINGS)}"
            )
        if self.pad_token_id is not None and not (0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(f"NeoBERTConfig.pad_token_id={self.pad_token_id} is outside [0, {self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        """Hidden width of the SwiGLU feed-forward: 2/3 of ``intermediate_size``, rounded up to 8."""
        multiple_of = 8
        size = int(2 * self.intermediate_size / 3)
        return multiple_of * ((size + multiple_of - 1) // multiple_of)
