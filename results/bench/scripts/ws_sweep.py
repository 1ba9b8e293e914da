"""Stage count and tile grouping of the Gluon enricher (gluon_gemm.STAGES, GROUP_M) at 16,384 x 768 -> 3,072,
bf16, GPU time under CUDA graphs, against the Triton tma-tanh kernel and cuBLAS's bare product in the same process.
Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/ws_sweep.py  (JSON to $OUT/ws_sweep.json)
"""
import json
import os

import torch
from triton.testing import do_bench_cudagraph

from aveyb.kernels import gemm, gluon_gemm

torch.manual_seed(0)
dev, dt = torch.device("cuda"), torch.bfloat16
d, E, R = 768, 4, 16384
x = torch.randn(R, d, device=dev, dtype=dt)
we = (torch.randn(E * d, d, device=dev) / 28).to(dt)
be = torch.randn(E * d, device=dev, dtype=dt) * 0.1
st = gemm.row_stats(x)
rows = []
os.environ["AVEYB_ENRICHER"] = "tma-tanh"
ref = gemm.enrich(x, st, we, be, None, 0, 1e-6)
for rep in range(2):
    for stages, group in ((4, 8), (3, 8), (5, 8), (4, 4), (4, 16), (4, 32), (5, 16)):
        gluon_gemm.STAGES, gluon_gemm.GROUP_M = stages, group
        os.environ["AVEYB_ENRICHER"] = "ws"
        try:
            z = gemm.enrich(x, st, we, be, None, 0, 1e-6)
            same = bool(torch.equal(z, ref))
            us = do_bench_cudagraph(lambda: gemm.enrich(x, st, we, be, None, 0, 1e-6), rep=200) * 1e3
            rows.append({"stages": stages, "group": group, "us": us, "bitwise_equal_tma_tanh": same})
            print(f"ws stages {stages} group {group:2d}: {us:7.1f} us  equal {same}", flush=True)
        except Exception as e:  # noqa: BLE001  e.g. shared memory exceeded
            print(f"ws stages {stages} group {group:2d}: FAILED {str(e).splitlines()[0][:100]}", flush=True)
    os.environ["AVEYB_ENRICHER"] = "tma-tanh"
    us = do_bench_cudagraph(lambda: gemm.enrich(x, st, we, be, None, 0, 1e-6), rep=200) * 1e3
    rows.append({"mode": "tma-tanh", "us": us})
    print(f"tma-tanh: {us:7.1f} us", flush=True)
us = do_bench_cudagraph(lambda: x @ we.T, rep=200) * 1e3
rows.append({"mode": "cublas bare mm", "us": us})
print(f"cublas bare mm: {us:7.1f} us")
json.dump({"gpu": torch.cuda.get_device_name(), "commit": os.environ.get("AVEYB_COMMIT"), "rows": rows},
          open(os.environ.get("OUT", "/tmp") + "/ws_sweep.json", "w"), indent=1)
