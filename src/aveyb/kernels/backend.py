"""The fused backend of the model's modules: :class:`TritonBackend`, the Triton counterpart of
:class:`aveyb.model.layers.ReferenceBackend`.

``AveyBLayer`` and ``AveyBRanker`` hold a backend and call its ``layer`` / ``rank`` op with their
own parameters, so the modules are always called: forward hooks, gradient checkpointing and FSDP2
see the fused layers as they see the reference ones. The model resolves the backend once, when it
is built or loaded (``AveyBPreTrainedModel.set_kernel_backend``), and all its modules share it.

One layer's fuser writes the row statistics the next layer's enricher needs (``rms_norm.RowStats``).
The backend remembers them with the output they describe and hands them to the next ``layer`` call
only when that call's input is that very tensor, unchanged (same object; same version counter where
the tensor has one): a hook that replaces a layer's output, or changes it in place outside
``torch.inference_mode``, makes the next layer compute them afresh. Tensors made under
``torch.inference_mode`` carry no version counter, so an in-place change of a layer's output by a
forward hook there goes unseen.

Imports neither torch's kernels nor Triton at module level: the kernel modules load on first use.
"""

from __future__ import annotations

import weakref

import torch

from aveyb.kernels.options import DEFAULT_OPTIONS, KernelOptions
from aveyb.kernels.tuning import interpreting


def _version(t: torch.Tensor):
    return None if t.is_inference() else t._version


class TritonBackend:
    """The fused ops on CUDA tensors (and on CPU ones inside Triton's interpreter, which the
    interpreter tests use). Off CUDA the reference ops run, unless ``strict``
    (``kernel_backend="triton"``), which raises instead."""

    name = "triton"

    def __init__(self, options: KernelOptions = DEFAULT_OPTIONS, strict: bool = False):
        if not isinstance(options, KernelOptions):
            raise TypeError(f"options must be an aveyb.kernels.KernelOptions, got {type(options).__name__}")
        self.options, self.strict = options, strict
        # Triton chooses its interpreter when a kernel is defined, so the answer holds for the process;
        # asked once here rather than per call (a model under torch.compile traces every call).
        self._interpret = interpreting()
        self._last = None  # (weak reference to the last fused output, its version, its row statistics)

    def __getstate__(self):  # copies and pickles forget the last output's statistics
        return {"options": self.options, "strict": self.strict, "_interpret": self._interpret, "_last": None}

    def __repr__(self) -> str:
        return f"TritonBackend({self.options!r}, strict={self.strict})"

    def runs_fused(self, x: torch.Tensor) -> bool:
        """Whether the kernels run for ``x``: on CUDA (or in Triton's interpreter); else the reference
        does, or, with ``strict``, a RuntimeError says why not."""
        if x.is_cuda or self._interpret:
            return True
        if self.strict:
            raise RuntimeError(f"kernel_backend='triton' needs CUDA inputs, got a {x.device.type} tensor; "
                               "kernel_backend='auto' runs the reference off CUDA")
        return False

    def layer(self, x, mask, w, spec):
        """:func:`aveyb.model.layers.layer_forward` through the fused kernels."""
        if not self.runs_fused(x):
            from aveyb.model.layers import layer_forward

            return layer_forward(x, mask, w, spec)
        from aveyb.kernels import layer as fused
        from aveyb.kernels import tuning

        tuning.set_autotune(self.options.autotune)
        out, stats = fused.layer_step(x, mask, w, spec, self.options, self._stats_of(x))
        self._remember(out, stats)
        return out

    def rank(self, x, mask, down_proj, config):
        """:func:`aveyb.model.ranker.rank_and_compress` through the fused kernels."""
        if not self.runs_fused(x):
            from aveyb.model.ranker import rank_and_compress

            return rank_and_compress(x, mask, down_proj, config)
        from aveyb.kernels import ranker, tuning

        tuning.set_autotune(self.options.autotune)
        self._last = None
        return ranker.rank_and_compress(x, mask, down_proj, config, self.options)

    def cross_entropy(self, logits, labels):
        """The masked-LM loss: the kernel on CUDA outside ``torch.compile`` (Inductor fuses the
        reference itself), else ``F.cross_entropy(logits.float(), labels, ignore_index=-100)``."""
        if logits.is_cuda and not torch.compiler.is_compiling():
            from aveyb.kernels import loss

            return loss.cross_entropy(logits, labels)
        from aveyb.model.layers import REFERENCE

        return REFERENCE.cross_entropy(logits, labels)

    def _stats_of(self, x):
        if torch.compiler.is_compiling() or self._last is None:
            return None
        ref, version, stats = self._last
        return stats if ref() is x and _version(x) == version else None

    def _remember(self, out, stats) -> None:
        if stats is None or torch.compiler.is_compiling():
            self._last = None
        else:
            self._last = (weakref.ref(out), _version(out), stats)
