import pytest
import torch

# Slow tests (left out by the fast tier, `-m "not slow"`) of files that carry no slow marker of their
# own: a pytest run in Triton's interpreter, checkpoints loaded by a Python without aveyb, ONNX exports,
# Inductor compilation.
SLOW = (
    "tests/kernels/test_interpreter.py::test_kernels_match_references_in_interpreter",
    "tests/test_model_checkpoints.py::test_every_head_loads_with_remote_code_where_aveyb_is_not_installed",
    "tests/test_model_checkpoints.py::test_import_aveyb_still_registers_the_auto_classes",
    "tests/test_model_hf.py::test_checkpoint_loads_with_remote_code_where_aveyb_is_not_installed",
    "tests/test_export_onnx.py::",
    "tests/test_cpu_fast_path.py::test_compiled_matches_reference_on_padded_batches",
)


def pytest_collection_modifyitems(config, items):
    """Mark the tests of ``SLOW`` slow. GPU tests run only where CUDA is present (the device
    machine), never in CI."""
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
