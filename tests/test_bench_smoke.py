"""``aveyb bench`` on a tiny model on the CPU, and the official-style model against the reference."""

from __future__ import annotations

import json

import pytest
import torch

from aveyb.cli import main

FIELDS = {"model", "impl", "mode", "batch", "seq_len", "tokens_per_s", "latency_ms", "peak_mem_gb", "gpu", "commit"}


def test_bench_cli_writes_records_table_and_plots(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: monkeypatch.setattr(torch, "get_num_threads", lambda: n))
    out = tmp_path / "bench.jsonl"
    code = main(["bench", "--models", "avey-b", "--impls", "reference,official-style", "--modes",
                 "inference,train,ranker", "--lengths", "40", "--batch", "2", "--train-lengths", "32",
                 "--train-batch", "2", "--preset", "tiny", "--vocab-size", "97", "--warmup", "1",
                 "--repeats", "2", "--min-time", "0", "--device", "cpu", "--threads", "1", "--dtype", "fp32",
                 "--out", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["impl"], r["mode"]) for r in records} == {
        (impl, mode) for impl in ("reference", "official-style") for mode in ("inference", "train", "ranker")}
    for rec in records:
        assert FIELDS <= set(rec), rec
        assert rec["status"] == "ok", rec
        assert rec["tokens_per_s"] > 0 and rec["latency_ms"] > 0
        assert rec["gpu"].startswith("cpu: ") and "(1 threads, " in rec["gpu"], rec["gpu"]  # model, threads, ISA
    table = out.with_suffix(".md").read_text()
    assert "| avey-b | official-style |" in table
    pytest.importorskip("matplotlib")
    assert (tmp_path / "bench_inference_b2.png").exists()


def test_bench_sparse_prediction_applies_to_our_train_step_only(tmp_path):
    out = tmp_path / "sparse.jsonl"
    code = main(["bench", "--models", "avey-b", "--impls", "reference,official-style", "--modes", "train,inference",
                 "--lengths", "32", "--batch", "2", "--train-lengths", "32", "--train-batch", "2", "--preset", "tiny",
                 "--vocab-size", "97", "--warmup", "1", "--repeats", "2", "--min-time", "0", "--device", "cpu",
                 "--dtype", "fp32", "--sparse-prediction", "--out", str(out)])
    assert code == 0
    notes = {(r["impl"], r["mode"]): r["note"] for r in map(json.loads, out.read_text().splitlines())}
    assert "sparse prediction" in notes[("reference", "train")]
    assert "sparse prediction" not in notes[("official-style", "train")]
    assert "sparse prediction" not in notes[("reference", "inference")]


def test_random_ids_are_not_constant():
    from aveyb.bench.runner import random_ids

    ids = random_ids(2, 64, 50, "cpu")
    assert ids.unique().numel() > 10 and int(ids.min()) >= 0 and int(ids.max()) < 50


@pytest.mark.parametrize("arrangement", ["interleaved_static_first", "dynamic_only"])
def test_official_style_matches_reference(arrangement):
    """Same weights, no padding, T a multiple of S: the official structure computes our function."""
    from aveyb.architectures import build_masked_lm
    from aveyb.bench.official_style import OfficialStyleAveyB

    torch.manual_seed(0)
    mlm = build_masked_lm("avey-b", "tiny", 101, layer_arrangement=arrangement).eval()
    official = OfficialStyleAveyB.from_aveyb(mlm, compile=False).eval()
    ids = torch.randint(0, 101, (2, 5 * mlm.config.split_size))
    with torch.no_grad():
        ref = mlm.model(input_ids=ids).last_hidden_state
        got = official(ids)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_official_style_rejects_non_default_options():
    from aveyb.bench.official_style import OfficialStyleAveyB
    from aveyb.config import preset_config

    with pytest.raises(ValueError):
        OfficialStyleAveyB(preset_config("tiny", dynamic_norm="softmax"), compile=False)


def test_report_ratios_use_measured_and_quoted_numbers():
    from aveyb.bench.report import markdown_table

    def rec(impl, n, tps, model="avey-b", status="ok"):
        return dict(model=model, impl=impl, mode="inference", batch=8, seq_len=n, tokens_per_s=tps,
                    latency_ms=8 * n / tps * 1e3, peak_mem_gb=1.0, gpu="X", commit="c", status=status)

    table = markdown_table([rec("fused", 2048, 2.0e6), rec("official-style", 2048, 1.0e6),
                            rec("fused", 32768, 1.0e6), rec("official-style", 32768, 1.0e6, status="oom")])
    assert "| avey-b official-style (measured) | 2.00× |  |" in table
    assert "| official (quoted numbers) | 2.17× | 1.45× |" in table
    assert "OOM" in table
    assert "Avey-B fused-graphs" not in table  # no ratio table for an implementation not measured


def test_report_gives_each_fused_implementation_its_ratio_table():
    from aveyb.bench.report import markdown_table

    def rec(impl, tps):
        return dict(model="avey-b", impl=impl, mode="inference", batch=8, seq_len=2048, tokens_per_s=tps,
                    latency_ms=1.0, peak_mem_gb=1.0, gpu="X", commit="c", status="ok")

    table = markdown_table([rec("fused-graphs", 1.5e6), rec("official-style", 1.0e6)])
    graphs = table.split("Ratios (Avey-B fused-graphs throughput over …)")[1]
    assert "| avey-b official-style (measured) | 1.50× |" in graphs
    assert "Ratios (fused Avey-B" not in table  # "fused" itself was not measured


def test_chosen_configs_reports_what_each_autotuner_settled_on(monkeypatch):
    """The bench records, per fused run, the config each autotuned kernel chose (from the autotuners'
    caches); kernels not tuned yet are left out."""
    pytest.importorskip("triton")
    from aveyb.kernels import ranker
    from aveyb.kernels.tuning import chosen_configs, config_label

    cfg = ranker._COMPRESS_CONFIGS[1]
    assert config_label(cfg) == "BLOCK_M=64,BLOCK_N=128,BLOCK_K=64,w4,s3"
    monkeypatch.setattr(ranker._compress_kernel, "cache", {})
    assert "_compress_kernel" not in chosen_configs()
    other = ranker._COMPRESS_CONFIGS[2]
    monkeypatch.setattr(ranker._compress_kernel, "cache", {
        (256, 768, 64, 3, "tf32", "torch.bfloat16", "torch.float32"): cfg, (32, 64, 1, 3, "tf32x3", "torch.float32"): other})
    assert chosen_configs()["_compress_kernel"] == {
        "S=256 D=768 NB=64 K=3 PREC=tf32 bfloat16,float32": config_label(cfg),
        "S=32 D=64 NB=1 K=3 PREC=tf32x3 float32": config_label(other)}


def test_size_bucket_separates_short_and_long_inputs():
    """The autotuning keys' size class: powers of two up to a cap, so 2,048 and 32,768 tokens tune
    apart while nearby sizes share a tuning."""
    from aveyb.kernels.tuning import size_bucket

    assert [size_bucket(n) for n in (0, 1, 2, 3, 64, 65, 1024, 4096, 5000)] == [1, 1, 2, 4, 64, 128, 1024, 4096, 4096]
    assert size_bucket(5000, cap=1024) == 1024


def test_every_mix_and_compression_kernel_tunes_per_size_class():
    """A kernel whose autotuning key has no size class keeps the config it tuned on the first shape
    (a 128-token sweep start cost the dynamic mix 9% at 2,048): every mix, MaxSim and compression
    kernel, forward and backward, must key on NB."""
    pytest.importorskip("triton")
    from aveyb.kernels import backward, layers, ranker

    kernels = [layers._static_mix_kernel, layers._dynamic_mix_kernel, ranker._maxsim_kernel,
               ranker._maxsim_tma_kernel, ranker._compress_kernel, backward._static_mix_backward_kernel,
               backward._dynamic_scores_backward_kernel, backward._dynamic_mix_backward_kernel]
    for kernel in kernels:
        assert "NB" in kernel.keys, f"{kernel.fn.__name__}: autotuning key {kernel.keys} has no size class"
        assert "NB" in kernel.fn.arg_names
