"""What the kernels of more than one operation share: @triton.jit helpers and launch helpers.

* the activations as Triton functions, with the ids the kernels take (``ACT_IDS``) and their
  derivatives;
* row masks, the grouped tile order and the two GEMM mainloops (pointer and TMA loads) with their
  autotuning candidates, shared by the enricher and the fuser;
* on the host: dot precision, mask arguments, fp32 weight-gradient products,
  device properties, TMA layouts and descriptors, and the fallback where this Triton cannot build a
  kernel.

The @triton.jit helpers keep the names the kernels call them by.
"""

from __future__ import annotations

import warnings

import torch
import triton
import triton.language as tl

ACT_IDS = {"gelu": 0, "gelu_tanh": 1, "relu": 2, "silu": 3}


# ---- activations ----
@triton.jit
def act_fn(x, ACT: tl.constexpr):
    """exact GELU (0), tanh GELU (1), ReLU (2), SiLU (3), as in ``aveyb.model.layers.ACT_FNS``."""
    if ACT == 0:
        y = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 1:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = 0.5 * x * (1.0 + (2.0 * tl.sigmoid(2.0 * inner) - 1.0))
    elif ACT == 2:
        y = tl.maximum(x, 0.0)
    else:
        y = x * tl.sigmoid(x)
    return y


@triton.jit
def act_grad(x, ACT: tl.constexpr):
    """d act / dx for exact GELU (0), tanh GELU (1), ReLU (2), SiLU (3) (``ACT_FNS``' autograd)."""
    if ACT == 0:
        cdf = 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476))
        y = cdf + x * 0.3989422804014327 * tl.exp(-0.5 * x * x)
    elif ACT == 1:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        t = 2.0 * tl.sigmoid(2.0 * inner) - 1.0
        y = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x)
    elif ACT == 2:
        y = tl.where(x > 0, 1.0, 0.0)
    else:
        s = tl.sigmoid(x)
        y = s * (1.0 + x * (1.0 - s))
    return y


@triton.jit
def tanh_approx(x):
    """The hardware tanh (one MUFU instruction, max relative error 2^-11)."""
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                     pack=1)


@triton.jit
def act_fast(x, ACT: tl.constexpr):
    """:func:`act_fn` for the 16-bit TMA enricher: both GELUs as the tanh form through the hardware
    tanh (see ``enricher.enricher_mode``); ReLU and SiLU as :func:`act_fn`."""
    if ACT <= 1:
        # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) in five FMA-pipe operations and one MUFU one
        half = 0.5 * x
        t = tanh_approx(x * (0.7978845608028654 + 0.035677408136300125 * (x * x)))
        y = half + half * t
    else:
        y = act_fn(x, ACT)
    return y


# ---- rows, tiles and GEMM mainloops ----
@triton.jit
def _keep_rows(mask_ptr, rows, row_ok, HAS_MASK: tl.constexpr):
    keep = row_ok
    if HAS_MASK:
        keep = keep & (tl.load(mask_ptr + rows.to(tl.int64), mask=row_ok, other=0) != 0)
    return keep


@triton.jit
def _grouped_tile(tile, num_m, num_n, GROUP_M: tl.constexpr):
    """(row tile, column tile) of linear tile index ``tile`` in grouped order: GROUP_M row tiles
    share each column tile while it sits in L2."""
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    return first_m + (tile % per_group) % group_size, (tile % per_group) // group_size


@triton.jit
def _tile_ids(R, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """This program's output tile (one tile per program)."""
    return _grouped_tile(tl.program_id(0), tl.cdiv(R, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)


@triton.jit
def _mainloop(a_ptr, w_ptr, R, N, K, LDA, pid_m, pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """acc = A[rows] · W[cols]ᵀ for A (R, K) with row stride LDA and W (N, K) row-major, in fp32."""
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    # Out-of-range rows/cols read a valid row instead (their results are never stored).
    a_rows = (rows % R).to(tl.int64)
    w_rows = (cols % N).to(tl.int64)
    a_ptrs = a_ptr + a_rows[:, None] * LDA + kk[None, :]
    w_ptrs = w_ptr + w_rows[None, :] * K + kk[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + kk) < K
        a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PREC)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    return acc, rows, cols


_GEMM_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=st)
    for bm, bn, bk, w, st in ((128, 256, 64, 8, 3), (128, 128, 64, 8, 4), (128, 128, 64, 4, 4),
                              (256, 128, 64, 8, 3), (64, 256, 64, 4, 4), (128, 64, 64, 4, 4),
                              (64, 64, 32, 4, 3))
]


# ---- Hopper path: persistent kernels with TMA (tensor-memory-accelerator) loads and stores ----
# One program per SM walks over output tiles; Triton pipelines the flattened loop so the next
# tile's loads run during this tile's epilogue, which is the expensive part here (GELU, two
# outputs). The epilogue works on two column halves of the tile to bound register pressure.
def _tma_block_shapes(nargs):
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["w_desc"].block_shape = [bn, bk]
    for name in ("z_desc", "x_desc", "out_desc"):
        if name in nargs:
            nargs[name].block_shape = [bm, bn // nargs.get("EPI", 2)]


# OCC programs per SM: with 2, one program's epilogue can run while the other's MMAs do. FLAT=False
# keeps the persistent loop nested (timed config by config, the fuser's fastest
# config on an H100 is a nested 128x256 loop with 4 stages, whose flattened form does not fit in
# shared memory). WS (Triton's warp specialisation) stays off: on Hopper it failed to compile or
# was not faster.
_TMA_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "OCC": occ, "FLAT": flat}, num_warps=w,
                  num_stages=st, pre_hook=_tma_block_shapes)
    for bm, bn, bk, w, st, occ, flat in (
        (128, 256, 64, 8, 3, 1, True), (128, 256, 64, 8, 4, 1, True), (256, 128, 64, 8, 3, 1, True),
        (128, 128, 64, 8, 4, 1, True), (128, 128, 64, 8, 3, 2, True), (128, 128, 64, 4, 3, 2, True),
        (128, 128, 64, 4, 2, 2, True), (128, 256, 128, 8, 2, 1, True), (256, 128, 128, 8, 2, 1, True),
        (128, 256, 64, 8, 4, 1, False))
]

# Smallest BLOCK_N of any fuser config: the row-statistics buffer holds one column per tile of it.
_MIN_BLOCK_N = min(c.kwargs["BLOCK_N"] for c in _GEMM_CONFIGS + _TMA_CONFIGS)


@triton.jit
def _tma_mainloop(a_desc, w_desc, off_m, off_n, k_tiles, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr):
    """acc = A[off_m:+BLOCK_M] · W[off_n:+BLOCK_N]ᵀ in fp32 through TMA loads (zero beyond the edges)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for ki in range(k_tiles):
        a = a_desc.load([off_m, ki * BLOCK_K])
        w = w_desc.load([off_n, ki * BLOCK_K])
        acc = tl.dot(a, w.T, acc)
    return acc


@triton.jit
def _halves(acc, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    acc = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
    return tl.split(acc)


def row_bucket(rows: int) -> int:
    """Autotuning key for the row count: short and long inputs may pick different tiles."""
    return min(triton.next_power_of_2(max(rows, 1)), 1 << 16)


# ---- elementwise kernels of the training path ----
ELEMENTWISE_CONFIGS = [triton.Config({"BLOCK_R": br, "BLOCK_N": bn}, num_warps=w)
                       for br, bn, w in ((32, 128, 4), (16, 256, 4), (64, 128, 8), (8, 128, 4), (4, 512, 4))]


def elementwise_grid(rows, cols):
    """The grid of a kernel tuned over ELEMENTWISE_CONFIGS: one program per (BLOCK_R x BLOCK_N) tile."""
    return lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(cols, meta["BLOCK_N"]))


# Kernels that also reduce over rows (dg, dα, the fuser bias's gradient) give each program ROWS_PER_PROGRAM
# rows, swept BLOCK_R at a time, and write one partial sum per program: the final sums stay
# deterministic and the partial buffers small (R / 32 rows). Longer row loops measured slower
# (256 rows: the gate backward took 317 µs against 207 µs with one tile per program, 32,768 rows).
ROWS_PER_PROGRAM = 32


# ---- host helpers ----
def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: 3xTF32 (about fp32 accuracy, so selections match the fp32 reference); bf16/fp16
    inputs use the tensor cores' native path and the flag is ignored."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def mask_arg(mask: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """A bool mask as the uint8 buffer the kernels read, or ``placeholder`` (any tensor: the
    kernel's HAS_MASK=False branch never reads it) when there is no mask."""
    return mask.contiguous().view(torch.uint8) if mask is not None else placeholder


_OUT_DTYPE_OK: dict = {}  # torch.mm / torch.bmm -> whether its out_dtype= overload ran here


def product_fp32(op, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``op(a, b)`` (``torch.mm`` or ``torch.bmm``) with an fp32-or-wider result: straight from the
    GEMM's fp32 accumulator where torch offers it (``out_dtype=``, CUDA, 16-bit inputs; remembered
    per op after the first try), else the product upcast."""
    if a.is_cuda and a.dtype in (torch.bfloat16, torch.float16) and _OUT_DTYPE_OK.get(op, True):
        try:
            out = op(a, b, out_dtype=torch.float32)
            _OUT_DTYPE_OK[op] = True
            return out
        except (TypeError, RuntimeError, NotImplementedError):
            _OUT_DTYPE_OK[op] = False
    return op(a, b).to(torch.promote_types(a.dtype, torch.float32))


_PROPERTIES: dict = {}


def device_properties(device):
    """The device's CUDA properties, cached: the torch query is Python-heavy and every layer needs
    the SM count and the compute capability (``python -m aveyb.bench.profile --host``)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _PROPERTIES:
        _PROPERTIES[index] = torch.cuda.get_device_properties(index)
    return _PROPERTIES[index]


def num_sms(device) -> int:
    return device_properties(device).multi_processor_count


def tma_layout_ok(t: torch.Tensor) -> bool:
    """What a tensor descriptor needs: unit last stride, 16-byte aligned base and row strides."""
    size = t.element_size()
    return (t.stride(-1) == 1 and t.data_ptr() % 16 == 0
            and all(stride * size % 16 == 0 for stride in t.stride()[:-1]))


def use_tma(width: int, *tensors: torch.Tensor, enabled: bool = True) -> bool:
    """The TMA kernels need Hopper or newer, 16-bit data, d a multiple of 128 and TMA-able layouts
    (a strided view such as Z[:, d:] qualifies); ``enabled`` is ``KernelOptions.gemm_tma``."""
    t0 = tensors[0]
    if not enabled or t0.device.type != "cuda":
        return False
    if t0.dtype not in (torch.bfloat16, torch.float16) or width % 128:
        return False
    if device_properties(t0.device).major < 9:
        return False
    return all(tma_layout_ok(t) for t in tensors)


def tensor_descriptor(t: torch.Tensor):
    """A TMA descriptor of ``t``; its block shape is set per config (``_tma_block_shapes``)."""
    from triton.tools.tensor_descriptor import TensorDescriptor  # only the TMA paths need it

    return TensorDescriptor(t, list(t.shape), list(t.stride()), [16, 16])


BROKEN_BUILDS: set = set()


def try_build(key, run, message: str, warn: bool = True):
    """``run()``'s result, or None where this Triton cannot build the kernel (a compiler failure, or
    no Gluon): ``key`` is then marked broken, so later calls fall back at once, and ``message``
    (formatted with the reason) is warned once if ``warn``. Runtime failures propagate."""
    from triton.compiler.errors import CompilationError

    if key in BROKEN_BUILDS:
        return None
    try:
        return run()
    except (ImportError, CompilationError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "PassManager" not in str(err) and "ptxas" not in str(err):
            raise  # a real runtime failure, not a compiler one
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    BROKEN_BUILDS.add(key)
    if warn:
        warnings.warn("aveyb: " + message.format(reason), RuntimeWarning, stacklevel=4)
    return None


def launch_tma(kernel, grid, fallback_name: str, *args, **kwargs) -> bool:
    """Run a TMA kernel; if this Triton cannot compile it, warn once and let the caller fall back."""
    return try_build(kernel, lambda: kernel[grid](*args, **kwargs) or True,
                     "the TMA kernel could not be built here ({}); using " + fallback_name + " instead") is not None

