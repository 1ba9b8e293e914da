"""An "official-style" Avey-B: the authors' structure, for side-by-side speed comparison.

Written from SPEC.md to reproduce how the authors' public implementation is *organised*, not
to be fast: the ranker is a Python loop over splits (split i is scored against the splits
before it, its top-k are gathered, weighted and concatenated into the (k+1)S-row window, and
D · window + X_i is one matmul per split), and the contextualization layers run under
``torch.compile``. Like the official code it ignores padding (no attention mask). Its
parameters carry the official names (SPEC 7), so :meth:`OfficialStyleAveyB.from_aveyb` copies
the weights of an :class:`aveyb.model.modeling_aveyb.AveyBModel` and the two compute the same
function on unpadded inputs whose length is a multiple of S (checked in
``tests/test_bench_official_style.py``).

Only the default options are implemented (direction "left", weighting "min", compression on,
divide-by-sum, exact GELU, static/dynamic layers); anything else raises.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def static_layer(x, norm_w, we, be, wf, bf, alpha, spatial_proj, eps: float):
    z = F.gelu(F.linear(_rms_norm(x, norm_w, eps), we, be))
    d = x.shape[-1]
    u, g, zb = z[..., :d], z[..., d:2 * d], z[..., 2 * d:]
    c = g * torch.matmul(spatial_proj.to(u.dtype), u)
    return F.linear(torch.cat([c, zb], dim=-1), wf, bf) + alpha * x


def dynamic_layer(x, norm_w, we, be, wf, bf, alpha, eps: float):
    z = F.gelu(F.linear(_rms_norm(x, norm_w, eps), we, be))
    d = x.shape[-1]
    u, g, zb = z[..., :d], z[..., d:2 * d], z[..., 2 * d:]
    un = u / u.norm(dim=-1, keepdim=True).clamp_min(eps)
    a = torch.matmul(un, un.transpose(-1, -2))
    a = a / a.abs().sum(dim=-1, keepdim=True).clamp_min(eps)
    c = g * torch.matmul(a, u)
    return F.linear(torch.cat([c, zb], dim=-1), wf, bf) + alpha * x


class _Layer(nn.Module):
    def __init__(self, width: int, split_size: int, kind: str):
        super().__init__()
        self.kind = kind
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(width))
        self.enricher = nn.Linear(width, 4 * width)
        self.fuser = nn.Linear(3 * width, width)
        self.alpha = nn.Parameter(torch.ones(()))
        if kind == "static":
            self.spatial_proj = nn.Parameter(torch.empty(split_size, split_size))
            nn.init.xavier_normal_(self.spatial_proj)
        nn.init.xavier_normal_(self.enricher.weight)
        nn.init.xavier_normal_(self.fuser.weight)
        nn.init.zeros_(self.enricher.bias)
        nn.init.zeros_(self.fuser.bias)


class OfficialStyleAveyB(nn.Module):
    """Encoder ids (B, T) -> (B, T, d) in the authors' structure; ``compile`` the layers or not."""

    def __init__(self, config, compile: bool = True):
        super().__init__()
        if (config.ranker_direction, config.split_weighting, config.compression, config.dynamic_norm,
                config.hidden_act, config.expansion_factor) != ("left", "min", True, "sum", "gelu", 4):
            raise ValueError("the official-style model implements the default Avey-B options only")
        if config.layer_arrangement not in ("interleaved_static_first", "interleaved_dynamic_first",
                                            "static_only", "dynamic_only"):
            raise ValueError(f"layer_arrangement={config.layer_arrangement!r} is not official-style")
        width, s = config.hidden_size, config.split_size
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, width)
        nn.init.xavier_normal_(self.embed.weight)
        self.ranker = nn.Module()
        self.ranker.down_proj = nn.Parameter(torch.empty(s, config.window_size))
        nn.init.xavier_normal_(self.ranker.down_proj)
        self.layers = nn.ModuleList(_Layer(width, s, kind) for kind in config.layer_kinds())
        if compile:
            self._static = torch.compile(static_layer, dynamic=True)
            self._dynamic = torch.compile(dynamic_layer, dynamic=True)
        else:
            self._static, self._dynamic = static_layer, dynamic_layer

    @classmethod
    def from_aveyb(cls, model, compile: bool = True) -> OfficialStyleAveyB:
        """Same weights as an ``AveyBModel`` (or any model holding one as ``.model``)."""
        encoder = getattr(model, "model", model)
        param = next(encoder.parameters())
        new = cls(encoder.config, compile=compile).to(device=param.device, dtype=param.dtype)
        new.load_state_dict({k: v for k, v in encoder.state_dict().items()}, strict=True)
        return new

    def rank(self, x: Tensor) -> Tensor:
        """The ranker as a loop over splits: (B, T, d) -> (B·N, S, d)."""
        cfg = self.config
        s, k, eps = cfg.split_size, cfg.num_retrieved_splits, cfg.eps
        batch, length, width = x.shape
        n = -(-length // s)
        if n * s != length:
            x = F.pad(x, (0, 0, 0, n * s - length))
        splits = x.view(batch, n, s, width)
        xn = x / (x.norm(dim=-1, keepdim=True) + eps)
        down = self.ranker.down_proj.to(x.dtype)
        rows = torch.arange(batch, device=x.device)[:, None]
        out = []
        for i in range(n):
            own = splits[:, i]
            m = min(i, k)
            parts = []
            if k - m:
                parts.append(x.new_zeros(batch, (k - m) * s, width))
            if m:
                sim = torch.bmm(xn[:, i * s:(i + 1) * s], xn[:, :i * s].transpose(1, 2))  # (B, S, i·S)
                scores = sim.view(batch, s, i, s).amax(dim=-1).sum(dim=1)  # (B, i)
                top, idx = scores.topk(m, dim=-1)
                weights = top / (top.amin(dim=-1, keepdim=True) + eps)
                picked = splits[rows, idx] * weights[:, :, None, None].to(x.dtype)  # (B, m, S, d)
                parts.append(picked.reshape(batch, m * s, width))
            parts.append(own)
            window = torch.cat(parts, dim=1)  # (B, (k+1)S, d)
            out.append(torch.matmul(down, window) + own)
        return torch.stack(out, dim=1).view(batch * n, s, width)

    def forward(self, input_ids: Tensor, labels: Tensor | None = None):
        """Hidden states (B, T, d); with ``labels``, an object whose ``.loss`` is the masked-LM loss
        (tied head H·Eᵀ, cross-entropy over positions whose label is not -100)."""
        hidden = self.encode(input_ids)
        if labels is None:
            return hidden
        logits = F.linear(hidden, self.embed.weight)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
        return SimpleNamespace(loss=loss, logits=logits)

    def encode(self, input_ids: Tensor) -> Tensor:
        batch, length = input_ids.shape
        h = self.rank(self.embed(input_ids))
        eps = self.config.eps
        for layer in self.layers:
            args = (h, layer.norm.weight, layer.enricher.weight, layer.enricher.bias,
                    layer.fuser.weight, layer.fuser.bias, layer.alpha)
            h = self._static(*args, layer.spatial_proj, eps) if layer.kind == "static" else self._dynamic(*args, eps)
        return h.view(batch, -1, h.shape[-1])[:, :length]
