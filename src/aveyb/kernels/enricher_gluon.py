"""The enricher as a warp-specialised Hopper kernel written in Gluon (``KernelOptions(enricher="ws",
gelu="tanh")``, and ``enricher="auto"`` with ``gelu="tanh"`` below ``enricher.WS_MAX_ROWS`` rows):
``enricher._enricher_tma_kernel`` with the tanh-form GELU, Z = act(r · (X · W'ᵀ) + b), W' = W_e · diag(g), r the RMSNorm row scale from the
previous fuser's partial sums, U zeroed on padded rows.

The Triton kernels run their epilogue after each tile's MMAs on the same warps, so the tensor
cores idle during it (timed on an H100: the enricher takes 138-142 µs against 129 µs with a one-op ReLU
epilogue and 117 µs for cuBLAS's bare product). Here three partitions share one ring of
shared-memory stages:

* a loader warp issues the TMA loads of A (X) and B (W') tiles, stage after stage;
* two consumer warpgroups take the program's tiles in turn (ping-pong). Each runs its tile's
  wgmma chain from the ring, then its epilogue while the other consumer's MMAs keep the tensor
  cores busy.

Stage ``s`` of global step ``n`` (tile i of this program, k-step j: n = i·k_tiles + j) is
``n % STAGES`` with barrier phase ``(n // STAGES) & 1``. An mbarrier wait only tells the phase just
completed from the one in flight, so a consumer must not wait on a stage two phases ahead: the
consumers take turns (``turn`` barriers, as CUTLASS's ping-pong order barrier). A consumer starts
waiting on its tile's stages only after the other one has waited on all of its previous tile's.
"""

from __future__ import annotations

import functools

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

BLOCK_M, BLOCK_N, BLOCK_K, STAGES, GROUP_M = 128, 128, 64, 4, 8


@gluon.jit
def _gelu_tanh(x):
    """0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))) on the hardware tanh, as ``_triton_utils.act_fast``."""
    half = 0.5 * x
    t = gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f",
                                  [x * (0.7978845608028654 + 0.035677408136300125 * (x * x))],
                                  dtype=gl.float32, is_pure=True, pack=1)
    return half + half * t


@gluon.jit
def _tile(t, num_m, num_n, GROUP: gl.constexpr):
    """(row tile, column tile) of tile ``t`` in grouped order, as ``_triton_utils._grouped_tile``."""
    per_group = GROUP * num_n
    first_m = (t // per_group) * GROUP
    size = gl.minimum(num_m - first_m, GROUP)
    return first_m + (t % per_group) % size, (t % per_group) // size


@gluon.jit
def _loader(a_desc, w_desc, a_bufs, w_bufs, ready, empty, num_m, num_n, n_local, k_tiles, NUM_SMS: gl.constexpr,
            BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr, NS: gl.constexpr, GROUP: gl.constexpr):
    pid = gl.program_id(0)
    nbytes: gl.constexpr = (BM + BN) * BK * 2  # 16-bit operands
    for i in range(n_local):
        pid_m, pid_n = _tile(pid + i * NUM_SMS, num_m, num_n, GROUP)
        for kk in range(k_tiles):
            step = i * k_tiles + kk
            s = step % NS
            mbarrier.wait(empty.index(s), ((step // NS) & 1) ^ 1)  # barriers start with phase 1 complete
            mbarrier.expect(ready.index(s), nbytes)
            tma.async_copy_global_to_shared(a_desc, [pid_m * BM, kk * BK], ready.index(s), a_bufs.index(s))
            tma.async_copy_global_to_shared(w_desc, [pid_n * BN, kk * BK], ready.index(s), w_bufs.index(s))


@gluon.jit
def _enrich_epilogue(acc, rows, cols, row_ok, ss_ptr, b_ptr, mask_ptr, N, K, NT, SS_STRIDE, eps,
                     HAS_MASK: gl.constexpr, row_layout: gl.constexpr):
    """gelu(acc · r + b), U (the first K columns) zeroed on padded rows."""
    r64 = rows.to(gl.int64)
    ss = gl.zeros(rows.shape, gl.float32, layout=row_layout)
    for t in range(NT):
        ss += gl.load(ss_ptr + r64 * SS_STRIDE + t, mask=row_ok, other=0.0)
    scale = gl.rsqrt(ss / K + eps)
    bias = gl.load(b_ptr + cols, mask=cols < N, other=0.0).to(gl.float32)
    z = _gelu_tanh(acc * gl.expand_dims(scale, 1) + gl.expand_dims(bias, 0))
    if HAS_MASK:
        keep = gl.load(mask_ptr + r64, mask=row_ok, other=0) != 0
        z = gl.where(gl.expand_dims(keep, 1) | gl.expand_dims(cols >= K, 0), z, 0.0)
    return z


@gluon.jit
def _consumer(ROLE: gl.constexpr, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem, ready, empty, turn,
              R, N, K, NT, SS_STRIDE, eps, num_m, num_n, n_local, k_tiles, HAS_MASK: gl.constexpr,
              NUM_SMS: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, NS: gl.constexpr, GROUP: gl.constexpr):
    acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, BN, 16])
    row_layout: gl.constexpr = gl.SliceLayout(1, acc_layout)
    col_layout: gl.constexpr = gl.SliceLayout(0, acc_layout)
    pid = gl.program_id(0)
    for i in range(ROLE, n_local, 2):
        pid_m, pid_n = _tile(pid + i * NUM_SMS, num_m, num_n, GROUP)
        # wait for the other consumer to have waited on all stages of tile i - 1 (its (i-1)//2-th tile)
        mbarrier.wait(turn.index(ROLE), ((i - 1) // 2) & 1, pred=i > 0)
        acc = gl.zeros((BM, BN), gl.float32, layout=acc_layout)
        for kk in range(k_tiles):
            step = i * k_tiles + kk
            s = step % NS
            mbarrier.wait(ready.index(s), (step // NS) & 1)
            acc = warpgroup_mma(a_bufs.index(s), w_bufs.index(s).permute((1, 0)), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
            # the previous step's MMA has finished reading its stage: hand it back to the loader
            mbarrier.arrive(empty.index((step + NS - 1) % NS), count=1, pred=kk > 0)
        mbarrier.arrive(turn.index(1 - ROLE), count=1)  # the other consumer may wait on tile i + 1's stages
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        mbarrier.arrive(empty.index((i * k_tiles + k_tiles - 1) % NS), count=1)
        rows = pid_m * BM + gl.arange(0, BM, layout=row_layout)
        cols = pid_n * BN + gl.arange(0, BN, layout=col_layout)
        row_ok = rows < R
        z = _enrich_epilogue(acc, rows, cols, row_ok, ss_ptr, b_ptr, mask_ptr, N, K, NT, SS_STRIDE, eps,
                             HAS_MASK, row_layout).to(z_desc.dtype)
        tma.store_wait(pendings=0)  # this consumer's previous tile has left c_smem
        c_smem.store(z)
        fence_async_shared()
        tma.async_copy_shared_to_global(z_desc, [pid_m * BM, pid_n * BN], c_smem)
    tma.store_wait(pendings=0)


@gluon.jit
def _partition(ROLE: gl.constexpr, a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem0,
               c_smem1, ready, empty, turn, R, N, K, NT, SS_STRIDE, eps, HAS_MASK: gl.constexpr,
               NUM_SMS: gl.constexpr, GROUP: gl.constexpr):
    """Partition ROLE: 0 and 1 are the consumers (even and odd local tiles), 2 the loader."""
    NS: gl.constexpr = a_bufs.type.shape[0]
    BM: gl.constexpr = a_bufs.type.shape[1]
    BK: gl.constexpr = a_bufs.type.shape[2]
    BN: gl.constexpr = w_bufs.type.shape[1]
    num_m = gl.cdiv(R, BM)
    num_n = gl.cdiv(N, BN)
    k_tiles = gl.cdiv(K, BK)
    n_local = gl.cdiv(num_m * num_n - gl.program_id(0), NUM_SMS)
    if ROLE == 2:
        _loader(a_desc, w_desc, a_bufs, w_bufs, ready, empty, num_m, num_n, n_local, k_tiles, NUM_SMS, BM, BN, BK,
                NS, GROUP)
    else:  # each consumer stages its output tile in its own buffer
        _consumer(ROLE, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem0 if ROLE == 0 else c_smem1, ready,
                  empty, turn, R, N, K, NT, SS_STRIDE, eps, num_m, num_n, n_local, k_tiles, HAS_MASK, NUM_SMS, BM, BN,
                  NS, GROUP)


@gluon.jit
def _gemm_ws_kernel(a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr, R, N, K, NT, SS_STRIDE, eps,
                    HAS_MASK: gl.constexpr, NUM_SMS: gl.constexpr, NS: gl.constexpr, GROUP: gl.constexpr):
    """Z = gelu_tanh(r · (A · Wᵀ) + b) for A (R, K) and W (N, K), persistent over NUM_SMS programs."""
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    BN: gl.constexpr = w_desc.block_type.shape[0]
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NS, BM, BK], a_desc.layout)
    w_bufs = gl.allocate_shared_memory(w_desc.dtype, [NS, BN, BK], w_desc.layout)
    c_smem0 = gl.allocate_shared_memory(z_desc.dtype, [BM, BN], z_desc.layout)
    c_smem1 = gl.allocate_shared_memory(z_desc.dtype, [BM, BN], z_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [NS, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NS, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NS):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)
    for c in gl.static_range(2):
        mbarrier.init(turn.index(c), count=1)
    gl.warp_specialize([
        (_partition, (0, a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem0, c_smem1,
                      ready, empty, turn, R, N, K, NT, SS_STRIDE, eps, HAS_MASK, NUM_SMS, GROUP)),
        (_partition, (1, a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem0, c_smem1,
                      ready, empty, turn, R, N, K, NT, SS_STRIDE, eps, HAS_MASK, NUM_SMS, GROUP)),
        (_partition, (2, a_desc, w_desc, z_desc, b_ptr, ss_ptr, mask_ptr, a_bufs, w_bufs, c_smem0, c_smem1,
                      ready, empty, turn, R, N, K, NT, SS_STRIDE, eps, HAS_MASK, NUM_SMS, GROUP)),
    ], [4, 1], [232, 24])


@functools.lru_cache(maxsize=None)
def _smem_layout(block: tuple[int, int], bf16: bool):
    """The swizzled shared-memory layout of a TMA block, cached: building it costs ~33 µs of Python
    per call, three times per launch, and eager forwards at 2,048 tokens are host-bound."""
    return gl.NVMMASharedLayout.get_default_for(list(block), gl.bfloat16 if bf16 else gl.float16)


def _desc(t: torch.Tensor, block: list[int]) -> TensorDescriptor:
    return TensorDescriptor.from_tensor(t, block, _smem_layout(tuple(block), t.dtype == torch.bfloat16))


def enrich_ws(x, parts, count, weight, bias, mask_u8, has_mask: bool, eps: float, z, num_sms: int) -> None:
    """Z (R, N) <- gelu_tanh(r · (x · weightᵀ) + bias), U zeroed on masked rows; 16-bit, Hopper."""
    rows, k = x.shape
    n_out = weight.shape[0]
    grid = (min(num_sms, triton.cdiv(rows, BLOCK_M) * triton.cdiv(n_out, BLOCK_N)),)
    # 4 + 4 + 1 warps run as three warpgroups: 12 warps x 32 threads x 168 registers fit the 64K
    # register file; the partitions then reallocate (consumers 232 each, loader 24).
    _gemm_ws_kernel[grid](
        _desc(x, [BLOCK_M, BLOCK_K]), _desc(weight, [BLOCK_N, BLOCK_K]), _desc(z, [BLOCK_M, BLOCK_N]), bias, parts,
        mask_u8, rows, n_out, k, count, parts.shape[1], eps,
        HAS_MASK=has_mask, NUM_SMS=grid[0], NS=STAGES, GROUP=GROUP_M, num_warps=4, maxnreg=168)
