"""Triton cross-entropy for the masked-LM head: ``F.cross_entropy(logits.float(), labels,
ignore_index=-100)`` (mean over labelled rows) without an fp32 copy of the logits.

The reference upcasts the (rows, V) logits to fp32, writes fp32 log-probabilities and, in the
backward, an fp32 gradient that is cast back: four or five passes over an array of rows x 50K
floats. Here the forward reads the logits once (an online max and sum of exponentials per row, in
fp32, Milakov & Gimelshein 2018) and keeps one log-sum-exp per row; the backward reads them once
more and writes softmax - one-hot, scaled, in the logits' dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

IGNORE_INDEX = -100


@triton.jit
def _ce_forward_kernel(logits_ptr, labels_ptr, lse_ptr, loss_ptr, V, stride,
                       IGNORE: tl.constexpr, BLOCK_V: tl.constexpr):
    """Row r: lse_r = log sum_v exp(x_rv); loss_r = lse_r - x_r,label (0 for an ignored row)."""
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride
    cols = tl.arange(0, BLOCK_V)
    m = tl.full((BLOCK_V,), float("-inf"), tl.float32)  # per-lane running max and sum
    s = tl.zeros((BLOCK_V,), tl.float32)
    for v0 in range(0, V, BLOCK_V):
        x = tl.load(base + v0 + cols, mask=(v0 + cols) < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        # A lane that has seen only -inf (the tail of a row) keeps s = 0 instead of exp(nan).
        s = tl.where(m_new == float("-inf"), 0.0, s * tl.exp(m - m_new) + tl.exp(x - m_new))
        m = m_new
    top = tl.max(m, axis=0)
    lse = top + tl.log(tl.sum(s * tl.exp(m - top), axis=0))
    label = tl.load(labels_ptr + row)
    keep = label != IGNORE
    target = tl.load(base + tl.where(keep, label, 0)).to(tl.float32)
    tl.store(lse_ptr + row, lse)
    tl.store(loss_ptr + row, tl.where(keep, lse - target, 0.0))


@triton.jit
def _ce_backward_kernel(logits_ptr, labels_ptr, lse_ptr, scale_ptr, grad_ptr, V, stride, grad_stride,
                        IGNORE: tl.constexpr, BLOCK_V: tl.constexpr):
    """grad_rv = (softmax_rv - [v == label_r]) * scale for labelled rows, 0 for ignored ones;
    scale = d loss / n_labelled, read from device memory (no host sync)."""
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row)
    scale = tl.where(label != IGNORE, tl.load(scale_ptr), 0.0)
    lse = tl.load(lse_ptr + row)
    cols = tl.arange(0, BLOCK_V)
    for v0 in range(0, V, BLOCK_V):
        ok = (v0 + cols) < V
        x = tl.load(logits_ptr + row * stride + v0 + cols, mask=ok, other=0.0).to(tl.float32)
        g = (tl.exp(x - lse) - tl.where(v0 + cols == label, 1.0, 0.0)) * scale
        tl.store(grad_ptr + row * grad_stride + v0 + cols, g.to(grad_ptr.dtype.element_ty), mask=ok)


def _block(vocab: int) -> int:
    return min(4096, max(128, triton.next_power_of_2(vocab)))


class CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over rows whose label is not -100 (the reference's ``ignore_index``);
    NaN when no row is labelled, as the reference. Labels must already be checked to lie in
    [0, V) or be -100 (``check_labels``): the kernels read the target logit at that index."""

    @staticmethod
    def forward(ctx, logits, labels):
        rows, vocab = logits.shape
        logits = logits if logits.stride(-1) == 1 else logits.contiguous()
        labels = labels.contiguous()
        lse = torch.empty(rows, device=logits.device, dtype=torch.float32)
        per_row = torch.empty(rows, device=logits.device, dtype=torch.float32)
        if rows:
            _ce_forward_kernel[(rows,)](logits, labels, lse, per_row, vocab, logits.stride(0),
                                        IGNORE=IGNORE_INDEX, BLOCK_V=_block(vocab), num_warps=8)
        n_labelled = (labels != IGNORE_INDEX).sum().to(torch.float32)
        ctx.save_for_backward(logits, labels, lse, n_labelled)
        return per_row.sum() / n_labelled

    @staticmethod
    def backward(ctx, grad_loss):
        logits, labels, lse, n_labelled = ctx.saved_tensors
        rows, vocab = logits.shape
        grad = torch.empty(rows, vocab, device=logits.device, dtype=logits.dtype)
        scale = (grad_loss.float() / n_labelled).reshape(1)
        if rows:
            _ce_backward_kernel[(rows,)](logits, labels, lse, scale, grad, vocab, logits.stride(0), grad.stride(0),
                                         IGNORE=IGNORE_INDEX, BLOCK_V=_block(vocab), num_warps=8)
        return grad, None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows, V) float logits on CUDA, (rows,) int64 labels -> scalar fp32 loss; see :class:`CrossEntropy`."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: logits must be (rows, V) and labels (rows,); got {tuple(logits.shape)}"
                         f" and {tuple(labels.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"cross_entropy: logits must be floating point, got {logits.dtype}")
    return CrossEntropy.apply(logits, labels.long())
