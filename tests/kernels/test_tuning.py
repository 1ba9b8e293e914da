"""Autotuning (``aveyb.kernels.tuning``): the untuned fallback, size classes, and the record of what
each autotuner chose."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib

import pytest

triton = pytest.importorskip("triton")
from aveyb.kernels import mix, ranker, tuning  # noqa: E402
from aveyb.kernels._triton_utils import _TMA_CONFIGS  # noqa: E402
from aveyb.kernels.tuning import chosen_configs, config_label, size_bucket  # noqa: E402


def test_untuned_fallback_ignores_switches():
    """The single config of an untuned kernel is the smallest footprint; a False switch (FLAT) must
    not make a config count as size zero."""
    big_nested = triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "FLAT": False}, num_stages=4)
    small = triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "FLAT": True}, num_stages=2)
    assert tuning.smallest_config([big_nested, small]) is small
    chosen = tuning.smallest_config(_TMA_CONFIGS)
    assert chosen.kwargs["BLOCK_N"] == 128 and chosen.kwargs["FLAT"]  # not the nested 128x256 one


def test_set_autotune_pins_and_restores(monkeypatch):
    """KernelOptions.autotune=False pins every autotuned kernel to its smallest config and True gives
    the candidates back; a repeated call changes nothing (so it never undoes other pins)."""
    for name in tuning.KERNEL_MODULES:
        importlib.import_module(name)
    kernel = ranker._compress_kernel
    full = list(ranker._COMPRESS_CONFIGS) if not tuning.interpreting() else kernel.configs
    monkeypatch.setattr(kernel, "configs", full)
    try:
        tuning.set_autotune(False)
        assert kernel.configs == [tuning.smallest_config(full)]
        tuning.set_autotune(False)
        assert kernel.configs == [tuning.smallest_config(full)]
    finally:
        tuning.set_autotune(True)
    assert kernel.configs == full
    tuning.set_autotune(True)
    assert kernel.configs == full


def test_every_module_with_autotuned_kernels_is_listed():
    """chosen_configs (the bench's record) and the tests' one-config fixture see the kernels of
    KERNEL_MODULES only: every module of aveyb.kernels with an autotuned kernel must be there."""
    package = pathlib.Path(tuning.__file__).parent
    with_kernels = set()
    for path in package.glob("*.py"):
        name = "aveyb.kernels" + ("" if path.stem == "__init__" else f".{path.stem}")
        if path.stem == "enricher_gluon" and importlib.util.find_spec("triton.experimental.gluon") is None:
            continue
        module = importlib.import_module(name)
        if any(hasattr(v, "configs") and isinstance(getattr(v, "cache", None), dict) for v in vars(module).values()):
            with_kernels.add(name)
    assert with_kernels == set(tuning.KERNEL_MODULES)


def test_chosen_configs_reports_what_each_autotuner_settled_on(monkeypatch):
    """The bench records, per fused run, the config each autotuned kernel chose (from the autotuners'
    caches); kernels not tuned yet are left out."""
    cfg = ranker._COMPRESS_CONFIGS[1]
    assert config_label(cfg) == "BLOCK_M=64,BLOCK_N=128,BLOCK_K=64,w4,s3"
    monkeypatch.setattr(ranker._compress_kernel, "cache", {})
    assert "_compress_kernel" not in chosen_configs()
    other = ranker._COMPRESS_CONFIGS[2]
    monkeypatch.setattr(ranker._compress_kernel, "cache", {
        (256, 768, 64, 3, "tf32", "torch.bfloat16", "torch.float32"): cfg, (32, 64, 1, 3, "tf32x3", "torch.float32"): other})
    assert chosen_configs()["_compress_kernel"] == {
        "S=256 D=768 NB=64 K=3 PREC=tf32 bfloat16,float32": config_label(cfg),
        "S=32 D=64 NB=1 K=3 PREC=tf32x3 float32": config_label(other)}


def test_size_bucket_separates_short_and_long_inputs():
    """The autotuning keys' size class: powers of two up to a cap, so 2,048 and 32,768 tokens tune
    apart while nearby sizes share a tuning."""
    assert [size_bucket(n) for n in (0, 1, 2, 3, 64, 65, 1024, 4096, 5000)] == [1, 1, 2, 4, 64, 128, 1024, 4096, 4096]
    assert size_bucket(5000, cap=1024) == 1024


def test_every_mix_and_compression_kernel_tunes_per_size_class():
    """A kernel whose autotuning key has no size class keeps the config it tuned on the first shape
    (a 128-token sweep start cost the dynamic mix 9% at 2,048): every mix, MaxSim and compression
    kernel, forward and backward, must key on NB."""
    kernels = [mix._static_mix_kernel, mix._dynamic_mix_kernel, ranker._maxsim_kernel, ranker._maxsim_tma_kernel,
               ranker._compress_kernel, mix._static_mix_backward_kernel, mix._dynamic_scores_backward_kernel,
               mix._dynamic_mix_backward_kernel]
    for kernel in kernels:
        assert "NB" in kernel.keys, f"{kernel.fn.__name__}: autotuning key {kernel.keys} has no size class"
        assert "NB" in kernel.fn.arg_names
