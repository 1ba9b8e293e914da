"""``aveyb bench`` on a tiny model on the CPU, and the official-style model against the reference."""

from __future__ import annotations

import json

import pytest
import torch

from aveyb.cli import main

FIELDS = {"model", "impl", "mode", "batch", "seq_len", "tokens_per_s", "latency_ms", "peak_mem_gb", "gpu", "commit"}


@pytest.mark.slow
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
    # --report without --out rebuilds the table beside the records (it once wrote to runs/bench/)
    moved = tmp_path / "elsewhere" / "records.jsonl"
    moved.parent.mkdir()
    out.rename(moved)
    out.with_suffix(".md").unlink()
    assert main(["bench", "--report", str(moved)]) == 0
    assert "| avey-b | official-style |" in moved.with_suffix(".md").read_text()


@pytest.mark.slow
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


@pytest.mark.slow
def test_bench_cpu_paths_are_rows_of_one_table(tmp_path):
    """The CPU inference paths run beside the reference in one bench call, each checked against it
    (the note), inference only; the CPU table gets their ratio tables and no GPU quoted numbers."""
    impls = "reference,cpu-fast,int8" + (",onnxruntime" if _has("onnxruntime") and _has("onnxscript") else "")
    out = tmp_path / "cpu.jsonl"
    code = main(["bench", "--models", "avey-b", "--impls", impls, "--modes", "inference,train", "--lengths", "40",
                 "--batch", "2", "--train-lengths", "32", "--train-batch", "2", "--preset", "tiny", "--vocab-size", "97",
                 "--warmup", "1", "--repeats", "2", "--min-time", "0", "--device", "cpu", "--threads", "1",
                 "--dtype", "fp32", "--out", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    fast = [r for r in records if r["impl"] != "reference"]
    assert {r["impl"] for r in fast} == set(impls.split(",")) - {"reference"}
    assert all(r["mode"] == "inference" and r["status"] == "ok" for r in fast), fast  # no train rows for them
    errors = {r["impl"]: float(r["note"].split("rel. err ")[1].split()[0]) for r in fast}
    assert errors["cpu-fast"] < 1e-5 and errors["int8"] < 0.2, errors
    if "onnxruntime" in errors:
        assert errors["onnxruntime"] < 1e-4
        note = next(r["note"] for r in fast if r["impl"] == "onnxruntime")
        assert "intra-op threads 1" in note, note  # ORT gets the bench's --threads
    table = out.with_suffix(".md").read_text()
    assert "Ratios (Avey-B cpu-fast throughput over …)" in table and "quoted" not in table


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
