"""CUDA-graph replay of the fused Avey-B encoder, for inference on repeated input shapes.

Short inputs are launch-bound: a forward is about four Triton launches per layer plus the ranker's,
each costing tens of microseconds of Python and driver time, more than the GPU work at 128-512
tokens. The fused path has no host synchronisation (``aveyb.kernels``), so a whole forward can be
captured once per input shape and replayed as a single launch::

    encoder = GraphedEncoder(model)          # model on CUDA, fused kernels
    hidden = encoder(input_ids, attention_mask)   # == model.base_model(...).last_hidden_state

The inputs are validated eagerly on every call (one sync, as in the model); the first call with a
new (shape, dtype, mask or not) warms up (Triton autotuning happens here) and captures. The
captured graph reads the weights' memory: after changing weights (training, ``load_state_dict``)
make a new ``GraphedEncoder``, since the enricher's RMSNorm-scaled weight is cached at capture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aveyb.model.modeling_aveyb import check_inputs


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    ids: Tensor
    mask: Tensor | None
    out: Tensor


class GraphedEncoder:
    """``model.base_model(input_ids, attention_mask).last_hidden_state`` through captured CUDA graphs."""

    def __init__(self, model, *, warmup: int = 2, max_graphs: int = 16, copy_output: bool = True):
        encoder = model.base_model
        device = next(encoder.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"GraphedEncoder needs a model on a CUDA device (found {device})")
        if warmup < 1:
            raise ValueError(f"warmup={warmup} must be >= 1 (autotuning must finish before capture)")
        self.encoder, self.device = encoder, device
        self.warmup, self.max_graphs, self.copy_output = warmup, max_graphs, copy_output
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def _forward(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        return self.encoder(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state

    def _capture(self, key: tuple, input_ids: Tensor, attention_mask: Tensor | None) -> _Captured:
        if len(self._graphs) >= self.max_graphs:
            self._graphs.pop(next(iter(self._graphs)))  # oldest shape first
        ids = input_ids.to(self.device).clone()
        mask = attention_mask.to(self.device).clone() if attention_mask is not None else None
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._forward(ids, mask)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._forward(ids, mask)
        captured = _Captured(graph, ids, mask, out)
        self._graphs[key] = captured
        return captured

    @torch.inference_mode()
    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        check_inputs(input_ids, attention_mask, None, self.encoder.config.vocab_size)
        key = (tuple(input_ids.shape), input_ids.dtype,
               None if attention_mask is None else attention_mask.dtype)
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(key, input_ids, attention_mask)
        captured.ids.copy_(input_ids)
        if attention_mask is not None:
            captured.mask.copy_(attention_mask)
        captured.graph.replay()
        # Graphs share one memory pool, so a later replay may overwrite this output: copy it.
        return captured.out.clone() if self.copy_output else captured.out
