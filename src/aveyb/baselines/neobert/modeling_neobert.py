"""NeoBERT, written from its paper (Le Breton et al., "NeoBERT: A Next-Generation BERT", 2025).

A pre-norm Transformer encoder: token embedding (no absolute positions) ->
``num_hidden_layers`` blocks of [RMSNorm -> multi-head self-attention with rotary
positions -> residual; RMSNorm -> SwiGLU -> residual] -> final RMSNorm. No linear layer of
the encoder has a bias. Attention is always ``torch.nn.functional.scaled_dot_product_attention``
with a boolean key-padding mask (``attn_implementation`` is ignored; PyTorch picks the
flash, memory-efficient or math kernel).

Two layout details match the published checkpoint so that its weights convert by renaming
only (see ``convert.py``): the fused ``qkv`` projection is laid out per head as
``[q_h | k_h | v_h]`` (not ``[Q | K | V]``), and rotary embeddings rotate adjacent pairs
``(x_0, x_1), (x_2, x_3), …`` (the complex-number convention of LLaMA), not the two halves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from aveyb.baselines.neobert.configuration_neobert import NeoBERTConfig
from aveyb.model.heads import classification_loss, label_cross_entropy, mean_pool, span_loss

# ---- rotary positions ---------------------------------------------------------------------


def rotary_angles(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``position · theta^(-2i/head_dim)``, shape ``positions.shape + (head_dim/2,)``.

    Computed in float32 (float64 for a float64 model) whatever the model's dtype.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=dtype) / head_dim)
    angles = positions.to(dtype)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of ``x`` (B, T, H, D) by the angles whose cos/sin are (B or 1, T, D/2)."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    even, odd = x.to(compute)[..., 0::2], x.to(compute)[..., 1::2]
    cos, sin = cos[:, :, None, :].to(compute), sin[:, :, None, :].to(compute)
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


# ---- blocks -------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """softmax(Q Kᵀ / sqrt(d_h) + mask) V per head, Q and K rotated; no biases."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, key_mask, cos, sin):
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, self.n_heads, 3 * self.head_dim).chunk(3, dim=-1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=key_mask
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    """W_down (silu(x W_gate) ⊙ x W_up); gate and up are one fused matrix ``gate_up``."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.hidden_size, 2 * config.ffn_size, bias=False)
        self.down = nn.Linear(config.ffn_size, config.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class NeoBERTBlock(nn.Module):
    """x + Attn(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.attn = SelfAttention(config)
        self.ffn_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.ffn = SwiGLU(config)

    def forward(self, x, key_mask, cos, sin):
        x = x + self.attn(self.attn_norm(x), key_mask, cos, sin)
        return x + self.ffn(self.ffn_norm(x))


# ---- pretrained-model plumbing ------------------------------------------------------------


class NeoBERTPreTrainedModel(PreTrainedModel):
    config_class = NeoBERTConfig
    config: NeoBERTConfig
    base_model_prefix = "neobert"
    supports_gradient_checkpointing = False
    _no_split_modules = ["NeoBERTBlock"]
    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As ``PreTrainedModel.from_pretrained``; a checkpoint of the published NeoBERT
        (remote code, its own parameter names) is converted to ours on the fly."""
        from aveyb.baselines.neobert.published import (
            _HUB_KEYS,
            is_published_neobert_checkpoint,
            load_published_neobert,
        )

        hub_kwargs = {k: kwargs[k] for k in _HUB_KEYS if k in kwargs}
        if (
            not model_args
            and pretrained_model_name_or_path is not None
            and is_published_neobert_checkpoint(pretrained_model_name_or_path, hub_kwargs)
        ):
            return load_published_neobert(cls, pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        """NeoBERT's initialisation: uniform(±range) for embeddings and linear weights, zero biases."""
        if isinstance(module, nn.Embedding):
            module.weight.uniform_(-self.config.embedding_init_range, self.config.embedding_init_range)
        elif isinstance(module, nn.Linear):
            module.weight.uniform_(-self.config.decoder_init_range, self.config.decoder_init_range)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.RMSNorm):
            module.weight.fill_(1.0)


class NeoBERTModel(NeoBERTPreTrainedModel):
    """The encoder: ids -> hidden states (B, T, d)."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(NeoBERTBlock(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, value):
        self.embed = value

    @staticmethod
    def _key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B, 1, 1, T) boolean, True where the key is a real token; None when nothing is padded,
        so that SDPA may pick its flash kernel (kept as a mask under torch.compile)."""
        if attention_mask is None:
            return None
        if not torch.compiler.is_compiling() and bool(attention_mask.all()):
            return None
        return attention_mask.bool()[:, None, None, :]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        length = x.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=x.device)[None]
        angle_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        cos, sin = rotary_angles(position_ids, self.config.head_dim, self.config.rope_theta, angle_dtype)
        key_mask = self._key_mask(attention_mask)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, key_mask, cos, sin)
            if output_hidden_states:
                hidden_states.append(x)
        x = self.final_norm(x)
        out = BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden_states) if hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    return hidden[:, 0] if pooling == "cls" else mean_pool(hidden, attention_mask)


class NeoBERTForMaskedLM(NeoBERTPreTrainedModel):
    """Encoder + ``decoder`` Linear(d, V) with bias (untied in the published model)."""

    _tied_weights_keys = {"decoder.weight": "neobert.embed.weight"}

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.neobert = NeoBERTModel(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.post_init()

    def get_output_embeddings(self):
        return self.decoder

    def set_output_embeddings(self, new_embeddings):
        self.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.neobert(input_ids, attention_mask, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.decoder(out.last_hidden_state)
        loss = None if labels is None else label_cross_entropy(logits, labels)
        result = MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()


class NeoBERTForSequenceClassification(NeoBERTPreTrainedModel):
    """NeoBERT's head: pooled state (CLS by default) -> dropout -> dense -> tanh -> dropout -> classifier."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.neobert = NeoBERTModel(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.neobert(input_ids, attention_mask, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True)
        pooled = _pool(out.last_hidden_state, attention_mask, self.config.classifier_pooling)
        pooled = self.dropout(torch.tanh(self.dense(self.dropout(pooled))))
        logits = self.classifier(pooled)
        loss = None if labels is None else classification_loss(self.config, logits, labels)
        result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()


class NeoBERTForTokenClassification(NeoBERTPreTrainedModel):
    """Encoder -> dropout -> Linear(d, n_labels) per token; labels -100 are ignored."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.neobert = NeoBERTModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.neobert(input_ids, attention_mask, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None if labels is None else label_cross_entropy(logits, labels)
        result = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()


class NeoBERTForQuestionAnswering(NeoBERTPreTrainedModel):
    """Extractive QA: Linear(d, 2) gives start and end logits; loss is their mean cross-entropy."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.neobert = NeoBERTModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                start_positions=None, end_positions=None, output_hidden_states=None, return_dict=None,
                **kwargs):
        out = self.neobert(input_ids, attention_mask, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states, return_dict=True)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        result = QuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits, hidden_states=out.hidden_states
        )
        return result if return_dict is not False else result.to_tuple()


__all__ = [
    "NeoBERTForMaskedLM",
    "NeoBERTForQuestionAnswering",
    "NeoBERTForSequenceClassification",
    "NeoBERTForTokenClassification",
    "NeoBERTModel",
    "NeoBERTPreTrainedModel",
    "apply_rotary",
    "rotary_angles",
]
