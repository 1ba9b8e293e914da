"""The launch helpers the operations share (``aveyb.kernels._triton_utils``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from aveyb.kernels._triton_utils import product_fp32, tma_layout_ok  # noqa: E402


def test_tma_layout_rule():
    """TMA takes the fuser's strided view Z[:, d:], not a misaligned or transposed one."""
    z = torch.empty(10, 4 * 128, dtype=torch.bfloat16)
    assert tma_layout_ok(z) and tma_layout_ok(z[:, 128:])
    assert not tma_layout_ok(z[:, 1:])  # base not 16-byte aligned
    assert not tma_layout_ok(z.t())  # last stride not 1
    assert not tma_layout_ok(torch.empty(10, 12, dtype=torch.bfloat16)[:, :4])  # row stride 24 bytes


@pytest.mark.parametrize("op", [torch.mm, torch.bmm], ids=["mm", "bmm"])
def test_product_fp32_result_dtype(op):
    """The weight-gradient products: 16-bit inputs give an fp32 result (on CPU the upcast product),
    fp64 stays fp64, and the values are the plain product's."""
    gen = torch.Generator().manual_seed(0)
    shape_a, shape_b = ((5, 7), (7, 3)) if op is torch.mm else ((2, 5, 7), (2, 7, 3))
    a, b = torch.randn(shape_a, generator=gen), torch.randn(shape_b, generator=gen)
    got = product_fp32(op, a.bfloat16(), b.bfloat16())
    assert got.dtype == torch.float32
    assert torch.equal(got, op(a.bfloat16(), b.bfloat16()).float())
    assert product_fp32(op, a.double(), b.double()).dtype == torch.float64
