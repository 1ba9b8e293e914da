"""Contextualization layers (SPEC.md section 3): enricher, contextualizer, fuser.

A layer works on splits independently: input (M, R, d) with M = batch · splits and R rows per
split (S with compression, L without). ``mask`` (M, R) marks real rows; masked rows are zero
in U before every mix, so they cannot influence real rows.

The layer is written once, as pure functions of its tensors (:func:`layer_forward`, from
:func:`enrich` and :func:`contextualize`): the module :class:`AveyBLayer` holds the parameters
and calls its backend's ``layer`` op with them; the reference backend (:class:`ReferenceBackend`)
runs these functions, and the fused training path compiles the same ones.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_layers import GradientCheckpointingLayer

ACT_FNS = {
    "gelu": lambda x: F.gelu(x),  # exact (erf), as in the official model
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x²) + ε) · g, computed in at least float32."""
    dtype = x.dtype
    x32 = x.to(torch.promote_types(dtype, torch.float32))
    normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return normed.to(dtype) * weight


def static_mix(u: Tensor, spatial_proj: Tensor) -> Tensor:
    """mix(U) = P · U with a learned, full (bidirectional) P."""
    return torch.matmul(spatial_proj.to(u.dtype), u)


def cosine_similarities(u: Tensor, eps: float) -> Tensor:
    """A = Û Ûᵀ with Û = U / max(‖U‖₂, ε) row-wise."""
    un = u / u.norm(dim=-1, keepdim=True).clamp_min(eps)
    return torch.matmul(un, un.transpose(-1, -2))


def normalize_similarities(a: Tensor, norm: str, eps: float, mask: Tensor | None, tau: Tensor | None) -> Tensor:
    """norm(A): divide-by-sum (default), softmax(A/τ), none, or signed sum; masked columns count 0."""
    if norm == "sum":
        return a / a.abs().sum(dim=-1, keepdim=True).clamp_min(eps)
    if norm == "softmax":
        logits = a / tau
        if mask is not None:
            # A finite floor, not -inf: a split with no real row must not produce NaN.
            logits = logits.masked_fill(~mask[:, None, :], torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1)
    if norm == "none":
        return a
    if norm == "signed_sum":
        return a / (a.sum(dim=-1, keepdim=True) + eps)
    raise ValueError(f"dynamic_norm={norm!r}; allowed: 'sum', 'softmax', 'none', 'signed_sum'")


def dynamic_mix(u: Tensor, mask: Tensor | None, norm: str, eps: float,
                tau: Tensor | None = None, spatial_proj: Tensor | None = None) -> Tensor:
    """mix(U) = norm(A) · U, or norm(P ⊙ A) · U for a coupled layer. ``u`` is already masked."""
    a = cosine_similarities(u, eps)
    if spatial_proj is not None:
        a = spatial_proj.to(a.dtype) * a
    return torch.matmul(normalize_similarities(a, norm, eps, mask, tau), u)


class LayerWeights(NamedTuple):
    """A layer's tensors, as :func:`layer_forward` takes them (``AveyBLayer.weights()``)."""

    norm: Tensor  # g, RMSNorm's gain (d)
    enricher_weight: Tensor  # W_e (E·d, d)
    enricher_bias: Tensor  # b_e (E·d)
    fuser_weight: Tensor  # W_f (d, (E/2 + 1)·d)
    fuser_bias: Tensor  # b_f (d)
    alpha: Tensor  # α (1)
    spatial_proj: Tensor | None = None  # P (R, R): static and coupled layers
    tau: Tensor | None = None  # τ (1): dynamic and coupled layers with softmax


@dataclass(frozen=True)
class LayerSpec:
    """What a layer computes besides its tensors: its kind (``static`` | ``dynamic`` | ``coupled``),
    the activation by name (``config.hidden_act``), the dynamic normalisation and ε."""

    kind: str
    hidden_act: str
    dynamic_norm: str
    eps: float


def enrich(x: Tensor, w: LayerWeights, spec: LayerSpec) -> tuple[Tensor, Tensor, Tensor]:
    """Z = act(W_e · RMSNorm(X) + b_e), split into U | G | Zb (d | d | rest)."""
    z = ACT_FNS[spec.hidden_act](F.linear(rms_norm(x, w.norm, spec.eps), w.enricher_weight, w.enricher_bias))
    width = x.shape[-1]
    return z[..., :width], z[..., width:2 * width], z[..., 2 * width:]


def contextualize(u: Tensor, mask: Tensor | None, w: LayerWeights, spec: LayerSpec) -> Tensor:
    """mix(U) of a static, dynamic or coupled layer, with U zeroed on padded rows first."""
    if mask is not None:
        u = u * mask.unsqueeze(-1).to(u.dtype)
    if spec.kind == "static":
        return static_mix(u, w.spatial_proj)
    proj = w.spatial_proj if spec.kind == "coupled" else None
    return dynamic_mix(u, mask, spec.dynamic_norm, spec.eps, w.tau, proj)


def layer_forward(x: Tensor, mask: Tensor | None, w: LayerWeights, spec: LayerSpec) -> Tensor:
    """out = W_f · [G ⊙ mix(U) ; Zb] + b_f + α · X (SPEC 3)."""
    u, gate, bypass = enrich(x, w, spec)
    mixed = gate * contextualize(u, mask, w, spec)
    return F.linear(torch.cat([mixed, bypass], dim=-1), w.fuser_weight, w.fuser_bias) + w.alpha * x


class ReferenceBackend:
    """The plain PyTorch ops, on any device: the specification as written. A backend gives the
    modules their ops (``layer``, ``rank``, ``cross_entropy``); ``aveyb.kernels.TritonBackend`` is
    the fused one, with the same contract."""

    name = "reference"

    def layer(self, x: Tensor, mask: Tensor | None, w: LayerWeights, spec: LayerSpec) -> Tensor:
        return layer_forward(x, mask, w, spec)

    def rank(self, x: Tensor, mask: Tensor | None, down_proj: Tensor | None, config) -> tuple[Tensor, Tensor]:
        from .ranker import rank_and_compress

        return rank_and_compress(x, mask, down_proj, config)

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), labels, ignore_index=-100)

    def __repr__(self) -> str:
        return "ReferenceBackend()"


REFERENCE = ReferenceBackend()


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


# Parameters that are one number each, stored with shape (1,) rather than 0-dim: FSDP2 shards every
# parameter along dim 0, so a 0-dim one would have to stay replicated, its gradients averaged and
# its norm counted by hand. Checkpoints written before held them 0-dim; they still load
# (AveyBLayer._load_from_state_dict, upgrade_scalar_shapes, and legacy_scalar_shapes for loaders
# that check shapes before any hook of the module runs, as transformers 5 does).
SCALAR_PARAMETERS = ("alpha", "tau")
_legacy_scalars: ContextVar[bool] = ContextVar("aveyb_legacy_scalar_shapes", default=False)


def upgrade_scalar_shapes(state: dict) -> dict:
    """Reshape the 0-dim ``alpha`` / ``tau`` of an older checkpoint's state dict to (1,), in place."""
    for key, value in state.items():
        if key.rpartition(".")[2] in SCALAR_PARAMETERS and isinstance(value, Tensor) and value.dim() == 0:
            state[key] = value.reshape(1)
    return state


@contextmanager
def legacy_scalar_shapes(enabled: bool = True):
    """Layers built inside the block hold 0-dim ``alpha`` / ``tau``, as older checkpoints do, so
    such a checkpoint loads through a loader that refuses any shape mismatch; reshape them with
    :func:`vectorise_scalars` afterwards."""
    token = _legacy_scalars.set(enabled)
    try:
        yield
    finally:
        _legacy_scalars.reset(token)


@torch.no_grad()
def vectorise_scalars(model: nn.Module) -> None:
    """Give the 0-dim ``alpha`` / ``tau`` of every layer of ``model`` the current shape (1,)."""
    for module in model.modules():
        if isinstance(module, AveyBLayer):
            for name in SCALAR_PARAMETERS:
                param = getattr(module, name, None)
                if param is not None and param.dim() == 0:
                    setattr(module, name, nn.Parameter(param.detach().reshape(1), requires_grad=param.requires_grad))


class AveyBLayer(GradientCheckpointingLayer):
    """One contextualization layer: out = W_f · [G ⊙ mix(U) ; Zb] + b_f + α · X.

    ``forward`` calls ``self.backend.layer`` with this module's own parameters, so the module is
    always called (forward hooks, gradient checkpointing and FSDP2's per-block parameter gathering
    see every layer, whichever backend runs it). The model sets the backend
    (``AveyBPreTrainedModel.set_kernel_backend``); a layer built alone runs the reference."""

    def __init__(self, config, kind: str, backend=None):
        super().__init__()
        width, rows = config.hidden_size, config.mixer_size
        self.kind = kind
        self.spec = LayerSpec(kind, config.hidden_act, config.dynamic_norm, config.eps)
        self.backend = backend if backend is not None else REFERENCE
        self.norm = RMSNorm(width, config.eps)
        self.enricher = nn.Linear(width, config.expansion_factor * width)
        self.fuser = nn.Linear((config.expansion_factor // 2 + 1) * width, width)
        scalar = () if _legacy_scalars.get() else (1,)
        self.alpha = nn.Parameter(torch.ones(scalar))
        if kind in ("static", "coupled"):
            self.spatial_proj = nn.Parameter(torch.empty(rows, rows))
        if kind in ("dynamic", "coupled") and config.dynamic_norm == "softmax":
            self.tau = nn.Parameter(torch.ones(scalar))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in SCALAR_PARAMETERS:  # a checkpoint from before alpha and tau were (1,)
            value, param = state_dict.get(prefix + name), getattr(self, name, None)
            if isinstance(value, Tensor) and value.dim() == 0 and param is not None and param.dim() == 1:
                state_dict[prefix + name] = value.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weights(self) -> LayerWeights:
        """This layer's tensors, read at call time (FSDP2 swaps in the gathered ones during forward)."""
        return LayerWeights(self.norm.weight, self.enricher.weight, self.enricher.bias, self.fuser.weight,
                            self.fuser.bias, self.alpha, getattr(self, "spatial_proj", None),
                            getattr(self, "tau", None))

    def enrich(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Z = act(W_e · RMSNorm(X) + b_e), split into U | G | Zb (:func:`enrich`)."""
        return enrich(x, self.weights(), self.spec)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.backend.layer(x, mask, self.weights(), self.spec)
