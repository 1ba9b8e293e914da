import pytest
import torch

# Slow tests (left out by the fast tier, `-m "not slow"`) of files that carry no slow marker of their
# own: a pytest run in Triton's interpreter, checkpoints loaded by a Python without aveyb, ONNX exports,
# Inductor compilation.


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CUDA is present (the device machine), never in CI."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
