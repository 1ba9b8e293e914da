"""The settings of the fused kernels, as one typed object (:class:`KernelOptions`).

A model holds one (``model.kernel_options``) and passes it to every fused call; no kernel reads the
environment. :meth:`KernelOptions.from_env` reads the ``AVEYB_*`` variables once, for benchmark
scripts that are driven by them, and only when called. Imports neither torch nor Triton.

Every default computes what SPEC.md writes (the exact, erf GELU); what changes numerics is opt-in
(``gelu="tanh"``). The other fields choose between kernels that compute the same function and
differ only in floating-point rounding order.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

GELUS = ("exact", "tanh")
ENRICHERS = ("auto", "ws", "tma")
TRAIN_LAYERS = ("auto", "triton", "compile")


def _choice(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"KernelOptions.{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _flag(name: str, value, allowed=(True, False)) -> None:
    if not any(value is a for a in allowed):
        raise ValueError(f"KernelOptions.{name}={value!r} is not allowed; choose one of {list(allowed)}")


@dataclass(frozen=True)
class KernelOptions:
    """How the fused kernels run. Frozen: build a new one with :meth:`replace` and hand it to the
    model (``model.set_kernel_backend(options=...)``).

    * ``gelu`` -- ``"exact"`` (default): every kernel applies the activation ``config.hidden_act``
      names (erf for ``gelu``). ``"tanh"``: the 16-bit Hopper enricher computes both GELUs in their
      tanh form on the hardware tanh (one MUFU instruction), about 20% faster per enricher call;
      it differs from the exact GELU by at most 4.7e-4 (a tenth of bf16's rounding of the result).
      fp32 and the pointer kernels always compute the exact activation.
    * ``enricher`` -- which kernel runs the 16-bit Hopper enricher: ``"tma"``, the persistent Triton
      TMA kernel; ``"ws"``, the warp-specialised Gluon kernel (GELU in its tanh form only, so it
      needs ``gelu="tanh"``); ``"auto"`` (default): with ``gelu="tanh"``, ``ws`` below
      ``enricher.WS_MAX_ROWS`` rows and ``tma`` from there (the two give bitwise equal outputs, so
      the row count never changes numerics), else ``tma``.
    * ``gemm_tma`` -- False forces the pointer GEMM kernels (the portable path) on Hopper too.
    * ``maxsim_tma`` -- False forces the pointer MaxSim kernel (the TMA one runs on Hopper, 16-bit
      data, from 256 splits; the scores differ only in rounding order).
    * ``autotune`` -- False runs one tile config per kernel, its smallest (a debugging aid that keeps
      compilation short). Triton's autotuners are module-level objects, so this holds for the whole
      process: the last model to launch a kernel sets it.
    * ``train_layer`` -- how a layer trains (autograd on): ``"triton"``, the hand-written forward
      and backward kernels; ``"compile"``, the reference layer under ``torch.compile``; ``"auto"``
      (default): ``triton`` from ``layer.AUTO_TRAIN_MIN_ELEMENTS`` elements per layer input, else
      ``compile``.
    * ``compile_layers`` -- False runs the ``compile`` training path's reference layer eagerly.
    * ``compile_dynamic`` -- ``torch.compile``'s ``dynamic`` for that layer: None (default:
      specialise on the first shapes, go dynamic if they change), True, or False.
    """

    gelu: str = "exact"
    enricher: str = "auto"
    gemm_tma: bool = True
    maxsim_tma: bool = True
    autotune: bool = True
    train_layer: str = "auto"
    compile_layers: bool = True
    compile_dynamic: bool | None = None

    def __post_init__(self) -> None:
        _choice("gelu", self.gelu, GELUS)
        _choice("enricher", self.enricher, ENRICHERS)
        _choice("train_layer", self.train_layer, TRAIN_LAYERS)
        for name in ("gemm_tma", "maxsim_tma", "autotune", "compile_layers"):
            _flag(name, getattr(self, name))
        _flag("compile_dynamic", self.compile_dynamic, (None, True, False))
        if self.enricher == "ws" and self.gelu != "tanh":
            raise ValueError("KernelOptions.enricher='ws' computes the GELU in its tanh form only: "
                             "set gelu='tanh' with it, or choose enricher 'auto' or 'tma'")

    def replace(self, **changes) -> KernelOptions:
        """A copy with ``changes`` applied (validated as a new object)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ=None) -> KernelOptions:
        """The options the ``AVEYB_*`` variables of ``environ`` (default ``os.environ``) ask for, read
        now, once; unset variables keep the defaults. For benchmark scripts driven by the
        environment (``aveyb bench``); a bad value is an error naming the variable.

        ``AVEYB_GELU`` exact|tanh, ``AVEYB_ENRICHER`` auto|ws|tma|tma-tanh (``ws`` and ``tma-tanh``,
        the names of the tanh-form kernels, imply ``gelu="tanh"``), ``AVEYB_GEMM_TMA`` /
        ``AVEYB_MAXSIM_TMA`` / ``AVEYB_AUTOTUNE`` / ``AVEYB_COMPILE_LAYERS`` 1|0,
        ``AVEYB_TRAIN_LAYER`` auto|triton|compile, ``AVEYB_COMPILE_DYNAMIC`` auto|1|0."""
        env = os.environ if environ is None else environ

        def read(var, choices, default):
            value = env.get(var, default)
            if value not in choices:
                raise ValueError(f"{var}={value!r}: expected one of {', '.join(choices)}")
            return value

        gelu = read("AVEYB_GELU", GELUS, "exact")
        enricher = read("AVEYB_ENRICHER", ("auto", "ws", "tma", "tma-tanh"), "auto")
        if enricher in ("ws", "tma-tanh"):
            gelu = "tanh"
        bit = lambda var: read(var, ("1", "0"), "1") == "1"  # noqa: E731
        return cls(gelu=gelu, enricher="tma" if enricher == "tma-tanh" else enricher,
                   gemm_tma=bit("AVEYB_GEMM_TMA"), maxsim_tma=bit("AVEYB_MAXSIM_TMA"), autotune=bit("AVEYB_AUTOTUNE"),
                   train_layer=read("AVEYB_TRAIN_LAYER", TRAIN_LAYERS, "auto"),
                   compile_layers=bit("AVEYB_COMPILE_LAYERS"),
                   compile_dynamic={"auto": None, "1": True, "0": False}[read("AVEYB_COMPILE_DYNAMIC",
                                                                              ("auto", "1", "0"), "auto")])


DEFAULT_OPTIONS = KernelOptions()
