"""Fast CPU inference: the reference model compiled by Inductor, weights frozen.

``compile_for_cpu(model)`` returns a module that computes what ``model`` computes (fp32, the
same function up to float rounding: relative error about 1e-6, ``tests/test_cpu_fast_path.py``)
and is faster on a CPU: ``torch.compile`` with Inductor's *freezing*, which treats the weights
as constants, pre-packs them for oneDNN and fuses each Linear with its bias and GELU, and fuses
the element-wise work around the GEMMs (RMSNorm, gates, residuals) into generated C++ loops.
The plain eager model stays the reference; nothing here changes it.

* Inference only: calls run under ``torch.inference_mode()``, and the frozen weights are a
  copy taken at the first call: changing the model's weights later does not reach the compiled
  module (build a new one).
* Inputs are checked eagerly (ids in range, right padding) before the compiled graph runs,
  as in the eager model.
* The first call of a new input shape compiles (tens of seconds on a few cores; a C++ compiler
  is needed); from the second distinct length on, torch.compile makes the length dynamic, and
  longer inputs can still recompile where the ranker's chunking changes. Warm up on the
  lengths you serve.
* int8 (:func:`aveyb.quantize.quantize_dynamic_int8`) is a separate, opt-in approximation;
  ONNX Runtime is a third route (``aveyb export``). ``aveyb bench --device cpu`` measures all three.
"""

from __future__ import annotations

import torch
from torch import nn


class CompiledForCPU(nn.Module):
    """``model`` under ``torch.compile`` (Inductor, freezing), called under inference mode."""

    def __init__(self, model: nn.Module, freezing: bool = True, dynamic: bool | None = None):
        super().__init__()
        self.model = model.eval()
        self.config = model.config
        self.compiled = torch.compile(model, dynamic=dynamic, options={"freezing": freezing})

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        from aveyb.model.modeling_aveyb import check_inputs

        check_inputs(input_ids, attention_mask, kwargs.get("inputs_embeds"), self.config.vocab_size)
        with torch.inference_mode():
            return self.compiled(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def compile_for_cpu(model: nn.Module, *, freezing: bool = True, dynamic: bool | None = None) -> CompiledForCPU:
    """The fast CPU inference path of any Avey-B model or head (fp32, exact up to rounding).

    ``freezing=False`` keeps the weights live (Inductor without constant folding or pre-packing:
    slower). ``dynamic`` is passed to ``torch.compile``.
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("compile_for_cpu is for a model on the CPU (on a GPU use kernel_backend='triton')")
    return CompiledForCPU(model, freezing=freezing, dynamic=dynamic)
