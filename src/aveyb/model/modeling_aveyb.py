"""Avey-B models (SPEC.md): the encoder and its heads as transformers ``PreTrainedModel``s.

Pipeline (SPEC 1): embedding -> ranker (once) -> contextualization layers on every split
independently -> un-split -> head. Parameter names are the official ones (SPEC 7), so the
authors' checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_aveyb import KERNEL_BACKENDS, AveyBConfig
from .heads import check_labels, classification_loss, mean_pool, span_loss
from .layers import (
    ACT_FNS,
    REFERENCE,
    SCALAR_PARAMETERS,
    AveyBLayer,
    RMSNorm,
    legacy_scalar_shapes,
    vectorise_scalars,
)


def check_inputs(input_ids: Tensor | None, attention_mask: Tensor | None, inputs_embeds: Tensor | None,
                 vocab_size: int) -> tuple[int, int]:
    """Validate ids and mask before any indexing; returns (batch, length)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is not None:
        if not isinstance(input_ids, Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}")
        shape = input_ids.shape
    else:
        if inputs_embeds.dim() != 3:
            raise ValueError(f"inputs_embeds must have shape (batch, length, hidden), got {tuple(inputs_embeds.shape)}")
        shape = inputs_embeds.shape[:2]
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"empty input: shape {tuple(shape)}; every sequence needs at least one token")
    if attention_mask is not None and (
            not isinstance(attention_mask, Tensor) or tuple(attention_mask.shape) != tuple(shape)):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(shape)}, got {got}")
    on_cuda = (input_ids if input_ids is not None else inputs_embeds).is_cuda
    if torch.compiler.is_compiling() or (on_cuda and torch.cuda.is_current_stream_capturing()):
        return shape[0], shape[1]  # no host sync while compiling or capturing a CUDA graph (checked before)
    # One device-to-host sync for every value check; details are computed only on failure.
    flags = []
    if input_ids is not None:
        flags.append(((input_ids < 0) | (input_ids >= vocab_size)).any())
    if attention_mask is not None:
        flags.extend(_mask_flags(attention_mask))
    if flags and bool(torch.stack(flags).any()):
        if input_ids is not None:
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= vocab_size:
                raise ValueError(f"input_ids must lie in [0, {vocab_size}) (vocab_size); found values in [{low}, {high}]")
        _raise_mask_error(attention_mask)
    return shape[0], shape[1]


def _mask_flags(attention_mask: Tensor) -> list[Tensor]:
    """Device-side flags: values other than 0/1, a row with no real token, a real token after a pad.

    Splits are cut from the left of the sequence, so a sequence's tokens must come first: with
    left padding every split boundary moves and real tokens' outputs change."""
    mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask.ne(0)
    flags = [mask.sum(dim=-1).eq(0).any(), (mask[:, 1:] & ~mask[:, :-1]).any()]
    if attention_mask.dtype != torch.bool:
        flags.append((attention_mask.ne(0) & attention_mask.ne(1)).any())
    return flags


def _raise_mask_error(attention_mask: Tensor) -> None:
    """The message for the first attention_mask check that fails (called after a flag fired)."""
    if attention_mask.dtype != torch.bool:
        odd = attention_mask[attention_mask.ne(0) & attention_mask.ne(1)]
        if odd.numel():
            raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (real token); found {odd[:5].tolist()}")
    mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask.ne(0)
    empty = mask.sum(dim=-1).eq(0).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"attention_mask row {int(empty[0])} has no real token (an empty sequence)")
    row = int((mask[:, 1:] & ~mask[:, :-1]).any(dim=-1).nonzero()[0, 0])
    raise ValueError(f"attention_mask row {row} has padding before a real token: Avey-B needs right-padded "
                     "batches (real tokens first, padding at the end); pad on the right, e.g. "
                     "tokenizer.padding_side = 'right'")


def first_non_finite(named_tensors) -> str | None:
    """Name of the first floating-point tensor holding NaN or ±inf, else None (one host sync)."""
    named = [(name, t) for name, t in named_tensors if t.is_floating_point() and t.device.type != "meta"]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0, 0])][0]


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CorruptWeightsError(ValueError):
    """A checkpoint whose weights cannot be read (a truncated file) or hold NaN / infinite values."""


def unreadable_weights_message(path, err: Exception) -> str:
    """One line naming the weights file safetensors could not read (the bad shard when sharded)."""
    return f"{_unreadable_file(path)}: cannot read the weights ({err}); the file is truncated or corrupted"


def _unreadable_file(path) -> str:
    import os

    source = weights_file(path)
    if not source.endswith(".index.json"):
        return source
    from safetensors import safe_open

    folder = os.path.dirname(source)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(folder, name), framework="pt"):
                    pass
            except Exception:
                return os.path.join(folder, name)
    return source


def refuse_non_finite_weights(model, path) -> None:
    """Raise :class:`CorruptWeightsError` naming the file and the first weight holding NaN / ±inf."""
    bad = first_non_finite(model.named_parameters())
    if bad is not None:
        source = weights_file(path, bad, getattr(model, "base_model_prefix", ""))
        raise CorruptWeightsError(f"{source}: weight {bad!r} holds NaN or infinite values; the file is corrupted "
                                  "(re-download or re-save it)")


def weights_file(path, tensor_name: str = "", prefix: str = "") -> str:
    """The file a local checkpoint read ``tensor_name`` from (the shard holding it when sharded)."""
    import json
    import os

    folder = os.fspath(path)
    if not os.path.isdir(folder):
        return folder
    for index in _WEIGHT_INDEXES:
        index_path = os.path.join(folder, index)
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f).get("weight_map", {})
            bare = tensor_name.removeprefix(f"{prefix}.")
            for key in (tensor_name, f"{prefix}.{tensor_name}", bare):
                if key in weight_map:
                    return os.path.join(folder, weight_map[key])
            return index_path
    found = [os.path.join(folder, name) for name in _WEIGHT_FILES if os.path.isfile(os.path.join(folder, name))]
    return found[0] if found else folder


def _holds_0dim_scalars(path, subfolder: str = "") -> bool:
    """Whether a local checkpoint stores ``alpha`` / ``tau`` 0-dim, as it did before they became (1,)."""
    import json
    import os

    folder = os.path.join(os.fspath(path), subfolder)
    if not os.path.isdir(folder):
        return False
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map", {})
        files = sorted({v for k, v in weight_map.items() if k.rpartition(".")[2] in SCALAR_PARAMETERS})
    else:
        files = ["model.safetensors"]
    from safetensors import safe_open

    for name in files:
        try:
            with safe_open(os.path.join(folder, name), framework="pt") as f:
                for key in f.keys():
                    if key.rpartition(".")[2] in SCALAR_PARAMETERS:
                        return len(f.get_slice(key).get_shape()) == 0
        except Exception:  # missing or unreadable: transformers' own loading reports it
            return False
    return False


def _kernels_module():
    """``aveyb.kernels``, or None where aveyb is not installed: a checkpoint's remote code runs this
    file alone, and transformers skips imports inside try blocks when it checks them."""
    try:
        from aveyb import kernels
    except ImportError:
        return None
    return kernels


def resolve_kernel_backend(name: str, config: AveyBConfig, options=None):
    """The backend ``kernel_backend=name`` stands for, for this configuration: "reference" (or its
    older name "torch") the plain PyTorch ops; "triton" the fused ops (a ValueError says why when
    they cannot run this configuration here); "auto" the fused ops where they can, else the
    reference. Off CUDA the fused backend runs the reference ops under "auto" and raises under
    "triton". ``options``: the ``aveyb.kernels.KernelOptions`` the fused ops run with."""
    if name in ("reference", "torch"):
        return REFERENCE
    kernels = _kernels_module()
    reason = "aveyb.kernels cannot be imported" if kernels is None else kernels.unsupported_reason(config)
    if reason is None:
        return kernels.TritonBackend(options if options is not None else kernels.KernelOptions(),
                                     strict=name == "triton")
    if name == "triton":
        raise ValueError(f"kernel_backend='triton' but the fused kernels cannot run this model: {reason}")
    return REFERENCE


class AveyBPreTrainedModel(PreTrainedModel):
    config_class = AveyBConfig
    config: AveyBConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["AveyBLayer"]
    supports_gradient_checkpointing = True

    def set_kernel_backend(self, name: str | None = None, options=None) -> None:
        """Choose how the layers, the ranker and the masked-LM loss run: ``name`` "auto" | "reference"
        | "triton" (default: ``config.kernel_backend``), ``options`` an ``aveyb.kernels.KernelOptions``
        (default: the model's current ``kernel_options``). Resolved here, once, for every module of
        the model (the modules call the backend's ops; nothing is decided per call but the device)."""
        name = self.config.kernel_backend if name is None else name
        if name not in KERNEL_BACKENDS:
            raise ValueError(f"kernel_backend={name!r} is not allowed; choose one of {list(KERNEL_BACKENDS)}")
        options = options if options is not None else getattr(self, "kernel_options", None)
        kernels = _kernels_module()
        if options is None and kernels is not None:
            options = kernels.KernelOptions()
        if options is not None and kernels is not None and not isinstance(options, kernels.KernelOptions):
            raise TypeError(f"options must be an aveyb.kernels.KernelOptions, got {type(options).__name__}")
        backend = resolve_kernel_backend(name, self.config, options)
        self.config.kernel_backend = name
        for module in self.modules():
            if isinstance(module, (AveyBLayer, AveyBRanker)):
                module.backend = backend
            elif isinstance(module, AveyBPreTrainedModel):
                module.backend, module.kernel_options = backend, options

    def post_init(self):
        super().post_init()
        self.set_kernel_backend()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loading, then a check that every weight is finite: a file with overwritten
        bytes loads without complaint as NaN weights otherwise, and only fails much later. A file
        that cannot be read (truncated) raises :class:`CorruptWeightsError` naming it."""
        legacy = _holds_0dim_scalars(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        try:
            with legacy_scalar_shapes(legacy):  # transformers 5 refuses a shape mismatch before any hook runs
                loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            if type(err).__name__ != "SafetensorError":  # safetensors' own error names no file
                raise
            raise CorruptWeightsError(unreadable_weights_message(pretrained_model_name_or_path, err)) from err
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if legacy:
            vectorise_scalars(model)
        refuse_non_finite_weights(model, pretrained_model_name_or_path)
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' saving; when the modeling code is shipped with the weights, ``auto_map``
        lists the base model and every head, so each loads with ``trust_remote_code=True`` (by
        default only the saved class would)."""
        if getattr(self, "_auto_class", None) is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Xavier-normal for Linear weights, the embedding, P and D; zero biases; ones elsewhere (SPEC 5)."""
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.xavier_normal_(module.weight)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, AveyBLayer):
            nn.init.ones_(module.alpha)
            if hasattr(module, "spatial_proj"):
                nn.init.xavier_normal_(module.spatial_proj)
            if hasattr(module, "tau"):
                nn.init.ones_(module.tau)
        elif isinstance(module, AveyBRanker) and module.down_proj is not None:
            nn.init.xavier_normal_(module.down_proj)


class AveyBRanker(nn.Module):
    """Holds D, the (S, (k+1)S) compression matrix shared by every split (SPEC 2.7); ``forward``
    calls its backend's ``rank`` op (:func:`aveyb.model.ranker.rank_and_compress` in the reference)."""

    def __init__(self, config: AveyBConfig, backend=None):
        super().__init__()
        self.config = config
        self.backend = backend if backend is not None else REFERENCE
        self.down_proj = nn.Parameter(torch.empty(config.split_size, config.window_size)) if config.compression else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, T, d) embeddings -> (B·N, R, d) layer inputs and their (B·N, R) row mask (or None)."""
        return self.backend.rank(x, mask, self.down_proj, self.config)


class AveyBModel(AveyBPreTrainedModel):
    """The encoder: ids (B, T) -> contextual states (B, T, d). Padded positions come out as zeros."""

    def __init__(self, config: AveyBConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=None)
        self.ranker = AveyBRanker(config)
        self.layers = nn.ModuleList(AveyBLayer(config, kind) for kind in config.layer_kinds())
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def unsplit(self, h: Tensor, batch: int, length: int) -> Tensor:
        """(B·N, R, d) split states -> (B, T, d): keep each split's own S rows, drop split padding."""
        split_size = self.config.split_size
        h = h.view(batch, -1, h.shape[-2], h.shape[-1])[:, :, -split_size:]
        return h.reshape(batch, -1, h.shape[-1])[:, :length]

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        config = self.config
        batch, length = check_inputs(input_ids, attention_mask, inputs_embeds, config.vocab_size)
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        return_dict = return_dict if return_dict is not None else config.return_dict
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        mask = attention_mask.bool() if attention_mask is not None else None

        h, row_mask = self.ranker(x, mask)
        all_hidden = [self.unsplit(h, batch, length)] if output_hidden_states else None
        for layer in self.layers:
            h = layer(h, row_mask)
            if output_hidden_states:
                all_hidden.append(self.unsplit(h, batch, length))

        out = self.unsplit(h, batch, length)
        if mask is not None:
            out = torch.where(mask.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))
        hidden_states = tuple(all_hidden) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (out, hidden_states) if v is not None)
        return BaseModelOutput(last_hidden_state=out, hidden_states=hidden_states)


def _encode(model: AveyBPreTrainedModel, input_ids, attention_mask, inputs_embeds, output_hidden_states) -> BaseModelOutput:
    return model.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                       output_hidden_states=output_hidden_states, return_dict=True)


class AveyBForMaskedLM(AveyBPreTrainedModel):
    """logits = H · Eᵀ, tied to the input embedding, no bias, no final norm (SPEC 4).

    With ``config.sparse_prediction`` and ``labels``, logits are computed only at labelled
    positions (shape (n_labelled, V)), which saves most of the head's memory in pretraining.
    """

    def __init__(self, config: AveyBConfig):
        super().__init__(config)
        self.model = AveyBModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed = value

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> MaskedLMOutput | tuple:
        keep, source = None, input_ids if input_ids is not None else inputs_embeds
        if labels is not None and source is not None:  # checked, and the labelled positions found,
            # before the encoder runs: their host syncs then wait on nothing queued, instead of
            # draining the encoder's kernels (the encoder raises for missing inputs)
            shape = source.shape[:2]
            if tuple(labels.shape) != tuple(shape):
                raise ValueError(f"labels must have shape {tuple(shape)}, got {tuple(labels.shape)}")
            check_labels(labels, self.config.vocab_size)
            if self.config.sparse_prediction:
                labels = labels.reshape(-1)
                keep = (labels != -100).nonzero().squeeze(1)
                labels = labels.index_select(0, keep)
        enc = _encode(self, input_ids, attention_mask, inputs_embeds, output_hidden_states)
        hidden = enc.last_hidden_state
        if keep is not None:
            hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)
        logits = F.linear(hidden, self.model.embed.weight)
        loss = None
        if labels is not None:
            loss = self.backend.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(v for v in (loss, logits, enc.hidden_states) if v is not None)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)


class AveyBForSequenceClassification(AveyBPreTrainedModel):
    """Mean pool -> Linear(d,2d) GELU Linear(2d,2d) GELU Linear(2d,d) -> Linear(d, n_labels) (SPEC 4)."""

    def __init__(self, config: AveyBConfig):
        super().__init__(config)
        width = config.hidden_size
        self.model = AveyBModel(config)
        act = ACT_FNS[config.hidden_act]
        self.dense = nn.Sequential(
            nn.Linear(width, 2 * width), _Act(act), nn.Linear(2 * width, 2 * width), _Act(act),
            nn.Linear(2 * width, width),
        )
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> SequenceClassifierOutput | tuple:
        enc = _encode(self, input_ids, attention_mask, inputs_embeds, output_hidden_states)
        pooled = mean_pool(enc.last_hidden_state, attention_mask)
        logits = self.classifier(self.dense(pooled))
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(v for v in (loss, logits, enc.hidden_states) if v is not None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)


class AveyBForTokenClassification(AveyBPreTrainedModel):
    """Linear(d,d) -> tanh -> Linear(d, n_labels) on every token (SPEC 4)."""

    def __init__(self, config: AveyBConfig):
        super().__init__(config)
        width = config.hidden_size
        self.model = AveyBModel(config)
        self.dense = nn.Sequential(nn.Linear(width, width), nn.Tanh())
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> TokenClassifierOutput | tuple:
        enc = _encode(self, input_ids, attention_mask, inputs_embeds, output_hidden_states)
        logits = self.classifier(self.dense(enc.last_hidden_state))
        loss = None
        if labels is not None:
            check_labels(labels, self.config.num_labels)
            if attention_mask is not None:  # padded positions never count
                labels = labels.masked_fill(attention_mask == 0, -100)
            loss = F.cross_entropy(logits.float().view(-1, self.config.num_labels), labels.view(-1), ignore_index=-100)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(v for v in (loss, logits, enc.hidden_states) if v is not None)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)


class AveyBForQuestionAnswering(AveyBPreTrainedModel):
    """The standard extractive-QA head: start/end logits from Linear(d, 2), transformers' loss.

    (The paper's in-span tagging variant is ``AveyBForTokenClassification`` with 2 labels.)
    """

    def __init__(self, config: AveyBConfig):
        super().__init__(config)
        self.model = AveyBModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, start_positions=None, end_positions=None,
                inputs_embeds=None, output_hidden_states=None, return_dict=None,
                **kwargs) -> QuestionAnsweringModelOutput | tuple:
        enc = _encode(self, input_ids, attention_mask, inputs_embeds, output_hidden_states)
        logits = self.qa_outputs(enc.last_hidden_state)
        if attention_mask is not None:  # a padded position can never be predicted
            logits = logits.masked_fill((attention_mask == 0).unsqueeze(-1), torch.finfo(logits.dtype).min)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(v for v in (loss, start_logits, end_logits, enc.hidden_states) if v is not None)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=enc.hidden_states)


class _Act(nn.Module):
    """An activation function as a module, so heads keep the official ``dense.{0,2,4}`` indices."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


# Auto class -> "module.Class" in a checkpoint folder that ships this code (save_pretrained).
AUTO_MAP = {
    "AutoConfig": "configuration_aveyb.AveyBConfig",
    "AutoModel": "modeling_aveyb.AveyBModel",
    "AutoModelForMaskedLM": "modeling_aveyb.AveyBForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_aveyb.AveyBForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_aveyb.AveyBForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_aveyb.AveyBForQuestionAnswering",
}
