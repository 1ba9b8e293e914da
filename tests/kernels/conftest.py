"""Fixtures of the kernel tests, and which of them run where.

* ``gpu`` tests need CUDA (tests/conftest.py skips them elsewhere);
* ``interpreter`` tests run the kernels on CPU in Triton's interpreter, which Triton chooses when a
  kernel is defined, from TRITON_INTERPRET: they run only in a process started with
  TRITON_INTERPRET=1 (test_interpreter.py starts one, in CI) and are skipped in any other;
* the rest run everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    skip = pytest.mark.skip(reason="runs in Triton's interpreter (TRITON_INTERPRET=1: tests/kernels/test_interpreter.py)")
    for item in items:
        if "interpreter" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    """Every test draws its random inputs from the same seed, whatever ran before it."""
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _one_config_per_kernel():
    """Every autotuned kernel runs one config, its smallest (what AVEYB_AUTOTUNE=0 selects at import):
    tuning every kernel for every shape here would compile each candidate many times over. The config
    tests (``test_*_config``) pin each candidate in turn instead."""
    if importlib.util.find_spec("triton") is None:
        yield
        return
    from aveyb.kernels import tuning

    for name in tuning.KERNEL_MODULES:
        importlib.import_module(name)
    with pytest.MonkeyPatch.context() as patch:
        for kernel in tuning.autotuned_kernels().values():
            patch.setattr(kernel, "configs", [tuning.smallest_config(kernel.configs)])
        yield
