"""The ``interpreter`` tests of tests/kernels, run on CPU by Triton's interpreter (in CI).

Triton decides between compiling and interpreting when a kernel is defined, from TRITON_INTERPRET,
so the same test files run again in a pytest subprocess whose environment sets it: setting it in
this process would turn the GPU tests of the same session into interpreter runs. There the
autotuned kernels keep one config each (``tuning.tunable``: the interpreter cannot time).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _skip_reason() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    import numpy
    import triton

    version = lambda text: tuple(int(v) for v in text.split(".")[:2])
    if version(numpy.__version__) >= (2, 4) and version(triton.__version__) < (3, 8):
        # Triton 3.6's interpreter converts 1-element arrays with int(), which numpy 2.4 refuses.
        return f"Triton {triton.__version__}'s interpreter needs numpy < 2.4 (found {numpy.__version__})"
    return None


@pytest.mark.slow
def test_kernels_match_references_in_interpreter():
    """``pytest tests/kernels -m interpreter`` with TRITON_INTERPRET=1: every interpreter case passes,
    none is skipped."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-m", "interpreter", "-q", "-rfEs", "-p", "no:cacheprovider"],
        cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=1800, check=False)
    output = proc.stdout + proc.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)\b", output)}
    assert proc.returncode == 0 and counts.get("passed", 0) > 0, f"rc {proc.returncode}:\n{output[-6000:]}"
    assert not counts.get("skipped"), f"interpreter cases were skipped:\n{output[-6000:]}"
