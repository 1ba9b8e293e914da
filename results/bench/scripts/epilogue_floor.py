"""How much of the TMA enricher's time is its GELU epilogue: the same kernel and tiles with the tanh
GELU (the default), with ReLU (one op: the floor of this kernel's mainloop and stores), with the
epilogue in quarters (EPI=4), against cuBLAS's bare product and the fuser against cuBLAS linear.
16,384 rows, d = 768, bf16. Usage: PYTHONPATH=src python3 results/bench/scripts/epilogue_floor.py
"""
import inspect
import json
import os

import torch
import triton
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

from aveyb.kernels import gemm

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
R, d, E = 16384, 768, 4
sms = torch.cuda.get_device_properties(0).multi_processor_count
x = torch.randn(R, d, device=dev, dtype=dt)
we = (torch.randn(E * d, d, device=dev) / 28).to(dt)
be = torch.randn(E * d, device=dev, dtype=dt) * 0.1
st = gemm.row_stats(x)
rows = []


def desc(t, shape):
    return TensorDescriptor(t, list(t.shape), list(t.stride()), shape)


def add(name, ms, extra=""):
    rows.append({"kernel": name, "us": ms * 1e3, "tflops": 2 * R * d * E * d / ms / 1e9})
    print(f"{name:58s} {ms * 1e3:8.1f} us {rows[-1]['tflops']:6.0f} TFLOP/s {extra}", flush=True)


add("cublas mm (bare)", do_bench(lambda: x @ we.T, warmup=50, rep=200))
add("cublasLt bias+gelu", do_bench(lambda: torch._addmm_activation(be, x, we.T, use_gelu=True), warmup=50, rep=200))
z = torch.empty(R, E * d, device=dev, dtype=dt)
for bm, bn, bk, w, s, occ, epi in ((128, 128, 64, 8, 3, 2, 2), (128, 128, 64, 8, 3, 2, 4), (128, 128, 64, 4, 3, 2, 4),
                                   (128, 256, 64, 8, 3, 1, 2), (128, 256, 64, 8, 3, 1, 4), (128, 256, 64, 8, 4, 1, 4),
                                   (128, 128, 32, 8, 5, 2, 4), (128, 128, 32, 8, 6, 2, 2)):
    for act, fast, label in ((0, 2, "gelu-tanh"), (2, 0, "relu"), (0, 1, "gelu-erf")):
        grid = (min(sms * occ, triton.cdiv(R, bm) * triton.cdiv(E * d, bn)),)
        fn = lambda: gemm._enricher_tma_kernel.fn[grid](  # noqa: E731
            desc(x, [bm, bk]), desc(we, [bn, bk]), desc(z, [bm, bn // epi]), be, st.parts, x,
            R, E * d, d, st.count, st.parts.shape[1], 0, 1e-6, HAS_MASK=False, ACT=act, FAST=fast, NUM_SMS=sms,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, OCC=occ, EPI=epi, num_warps=w, num_stages=s)
        try:
            k = fn()
            meta = f"regs {k.n_regs} smem {k.metadata.shared}" if hasattr(k, "n_regs") else ""
            add(f"enrich {label} {bm}x{bn}x{bk} w{w} s{s} occ{occ} epi{epi}", do_bench(fn, warmup=50, rep=200), meta)
        except Exception as e:  # noqa: BLE001
            print(f"enrich {label} {bm}x{bn}x{bk} w{w} s{s} occ{occ} epi{epi} FAILED {str(e).splitlines()[0][:120]}")
try:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia import hopper
    print("gluon warp_specialize", inspect.signature(gl.warp_specialize))
    print("gluon hopper", [n for n in dir(hopper) if not n.startswith("_")])
    print("gluon tma", [n for n in dir(hopper.tma) if not n.startswith("_")])
    print("gluon mma", inspect.signature(hopper.warpgroup_mma), inspect.signature(hopper.warpgroup_mma_wait))
except Exception as e:  # noqa: BLE001
    print("gluon:", repr(e))
json.dump({"gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "rows": rows},
          open(os.environ.get("OUT", "/tmp") + "/epilogue_floor.json", "w"), indent=1)
