"""The Triton kernels checked on CPU by Triton's interpreter (runs in CI where Triton is installed).

The checks live in ``kernel_interpreter_check.py`` and run in one subprocess with
TRITON_INTERPRET=1, because Triton decides between compiling and interpreting when a kernel is
defined: setting it in this process would turn the GPU tests of the same session into
interpreter runs. Tolerances are float32 ones (the interpreter computes in numpy float32/64).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_interpreter_check import CASES

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


@pytest.fixture(scope="module")
def interpreter_results():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, TRITON_INTERPRET="1", AVEYB_AUTOTUNE="0", PYTHONPATH=os.pathsep.join(
        [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(HERE / "kernel_interpreter_check.py")], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            results[row["case"]] = row
    if not results:
        pytest.fail(f"the interpreter run printed nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return results


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_kernel_matches_reference_in_interpreter(case, interpreter_results):
    row = interpreter_results.get(case)
    assert row is not None, f"{case}: no result ({CASES[case]})"
    assert "error" not in row, f"{case}: {row['error']}"
    # Within 1e-5, or no worse than 3x the float32 PyTorch reference (the GPU tests' rule).
    bound = max(1e-5, 3 * row["reference_err"])
    assert row["err"] <= bound, f"{case} ({CASES[case]}): relative error {row['err']:.3e} > {bound:.1e}"
