"""End-to-end pretraining on CPU: tiny run + fill-mask, NaN stop, exact resume after SIGKILL,
clear errors before training, and 2-rank gloo DDP equal to 1 rank."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.loop import TrainingError, pretrain

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(
    arch="avey-b", model_preset="tiny", tokenizer="bundled:bpe-4k",
    sources=[{"type": "bundled", "include": ["moby_dick", "bible_kjv"]}],
    seq_len=64, global_batch_tokens=512, micro_batch_size=4, max_steps=8, lr=3e-3,
    log_every=1, eval_every=4, checkpoint_every=3, holdout_every=20, val_sequences=8,
    progress_bar=False, tensorboard=False,
)


def _losses(run: Path, key: str = "loss") -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in records if key in r}


def _rewind_to_legacy(source: Path, run: Path, step: int) -> None:
    """A copy of ``source`` stopped at its checkpoint ``step``, rewritten as checkpoints were saved
    before alpha and tau had shape (1,): those parameters and their Adam moments 0-dim."""
    shutil.copytree(source, run)
    shutil.rmtree(run / "final")
    for later in (run / "checkpoints").glob("step-*"):
        if int(later.name.split("-")[1]) > step:
            shutil.rmtree(later)
    checkpoint = run / "checkpoints" / f"step-{step:08d}"
    (run / "checkpoints" / "latest").write_text(checkpoint.name + "\n")
    model = torch.load(checkpoint / "model.pt", weights_only=True)
    scalars = [k for k in model if k.endswith((".alpha", ".tau"))]
    assert scalars and all(model[k].shape == (1,) for k in scalars)
    torch.save({k: (v.reshape(()) if k in scalars else v) for k, v in model.items()}, checkpoint / "model.pt")
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    moments = 0
    for entry in optimizer["state"].values():
        for name, value in entry.items():
            if name != "step" and value.shape == (1,):  # only alpha's and tau's have this shape here
                entry[name] = value.reshape(())
                moments += 1
    assert moments == 2 * len(scalars)
    torch.save(optimizer, checkpoint / "optimizer.pt")


def _cli(run: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "aveyb.pretrain", "--config", "tiny", "--output-dir", str(run)]
    for key, value in SMALL.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args + list(extra)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted in-process run, shared by the tests below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same as the subprocesses (OMP_NUM_THREADS=1): bit-exact comparisons
    try:
        run = tmp_path_factory.mktemp("reference")
        assert pretrain(PretrainConfig(**SMALL), run) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def test_end_to_end_and_fill_mask(reference_run):
    records = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert all({"loss", "lr", "tokens_per_s", "grad_norm"} <= set(r) for r in train)
    assert train[-1]["loss"] < train[0]["loss"]
    assert any("val_loss" in r and 0 <= r["val_accuracy"] <= 1 for r in records)
    assert (reference_run / "checkpoints" / "latest").read_text().strip() == "step-00000008"

    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, pipeline

    import aveyb  # noqa: F401

    # a checkpoint says which model its weights belong to
    def model_keys(path):
        loading = ("dtype", "architectures", "_name_or_path", "auto_map", "transformers_version")
        return {k: v for k, v in AutoConfig.from_pretrained(path).to_dict().items() if k not in loading}

    assert model_keys(reference_run / "checkpoints" / "step-00000008") == model_keys(reference_run / "final")

    final = reference_run / "final"
    model = AutoModelForMaskedLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert model.config.vocab_size % 64 == 0 and tok.mask_token is not None
    fill = pipeline("fill-mask", model=model, tokenizer=tok)
    preds = fill("Call me <mask>.", top_k=3)
    assert len(preds) == 3 and all("sequence" in p for p in preds)


@pytest.mark.slow
def test_exact_resume_after_sigkill(reference_run, tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = run / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step-00000003":
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed"
    # resume in a fresh process, exactly as a user would
    resumed = subprocess.run(_cli(run, "--resume"), env=_env(), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    assert _losses(run) == _losses(reference_run)  # bit-exact on CPU


def test_resumes_a_checkpoint_from_before_alpha_had_shape_1(reference_run, tmp_path):
    run = tmp_path / "legacy"
    _rewind_to_legacy(reference_run, run, 6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert pretrain(PretrainConfig(**SMALL), run, resume=True) == 0
    finally:
        torch.set_num_threads(threads)
    assert _losses(run) == _losses(reference_run)  # bit-exact on CPU
    model = torch.load(run / "checkpoints" / "step-00000008" / "model.pt", weights_only=True)
    assert {tuple(v.shape) for k, v in model.items() if k.endswith(".alpha")} == {(1,)}


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from aveyb.pretrain import loop

    cfg = PretrainConfig(**{**SMALL, "holdout_every": 0})
    real_build, calls = loop.build_model, {"n": 0}

    def build_poisoned(cfg, tokenizer):  # the model's loss turns NaN from the 5th optimizer step
        model = real_build(cfg, tokenizer)
        forward = model.forward

        def forward_nan_from_step_5(*args, **kwargs):
            out = forward(*args, **kwargs)
            if model.training:
                calls["n"] += 1
                if calls["n"] > 4 * cfg.accumulation_steps(1):
                    out.loss = out.loss * float("nan")
            return out

        model.forward = forward_nan_from_step_5
        return model

    monkeypatch.setattr(loop, "build_model", build_poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan at step 5.*step-00000003"):
        pretrain(cfg, tmp_path)
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    assert not (tmp_path / "final").exists()
    assert max(_losses(tmp_path)) == 4


def test_clear_errors_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        pretrain(PretrainConfig(**{**SMALL, "sources": [{"type": "jsonl", "path": str(tmp_path / "x*.jsonl")}]}),
                 tmp_path / "a")
    with pytest.raises(ValueError, match="not divisible"):
        pretrain(PretrainConfig(**{**SMALL, "micro_batch_size": 3}), tmp_path / "b")
    with pytest.raises(TrainingError, match="cannot take|longer than"):
        pretrain(PretrainConfig(**{**SMALL, "arch": "bert", "seq_len": 4096, "global_batch_tokens": 4096 * 4,
                                   "model_overrides": {"max_position_embeddings": 512}}), tmp_path / "c")
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_refuses_to_overwrite_without_resume(reference_run):
    with pytest.raises(TrainingError, match="--resume"):
        pretrain(PretrainConfig(**SMALL), reference_run)


def test_cli_errors_exit_nonzero(tmp_path):
    from aveyb.cli import main

    assert main(["pretrain", "--config", "tiny", "--output-dir", str(tmp_path), "--set", "colour=red"]) == 2


@pytest.mark.slow
def test_two_ranks_match_one_rank_ddp_and_fsdp2(tmp_path):
    """torchrun --nproc-per-node 2 (gloo) with the same global batch gives the same losses and
    gradient norms (FSDP2 shards every parameter, alpha included, and clip_grad_norm_ reduces the
    norm of the shards); FSDP2 also resumes a checkpoint from before alpha had shape (1,)."""
    small = ["--max-steps", "3", "--set", "holdout_every=0", "--set", "micro_batch_size=2",
             "--set", "checkpoint_every=2"]
    one = subprocess.run(_cli(tmp_path / "one", *small), env=_env(), capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-2000:]
    reference, norms = _losses(tmp_path / "one"), _losses(tmp_path / "one", "grad_norm")
    assert reference.keys() == {1, 2, 3} and norms[1] > SMALL.get("grad_clip", 1.0)  # clipping is on

    def torchrun(run, port, *extra):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-port", str(port)] + _cli(run, *small, *extra)[1:],
                              env=_env(), capture_output=True, text=True, timeout=240)

    for port, strategy in ((29533, "ddp"), (29534, "fsdp2")):
        run = tmp_path / strategy
        two = torchrun(run, port, "--set", f"distributed={strategy}")
        assert two.returncode == 0, two.stderr[-3000:]
        losses = _losses(run)
        assert losses.keys() == reference.keys()
        for step in reference:
            assert losses[step] == pytest.approx(reference[step], rel=1e-6), strategy
            # the norm is summed in fp32, over the whole tensor or over each shard: ~2e-5 apart here
            assert _losses(run, "grad_norm")[step] == pytest.approx(norms[step], rel=1e-4), strategy
    _rewind_to_legacy(tmp_path / "fsdp2", tmp_path / "legacy", 2)
    resumed = torchrun(tmp_path / "legacy", 29535, "--set", "distributed=fsdp2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _losses(tmp_path / "legacy")[3] == pytest.approx(_losses(tmp_path / "fsdp2")[3], rel=1e-6)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits(tmp_path):
    run = tmp_path / "term"
    proc = subprocess.Popen(_cli(run, "--set", "max_steps=500", "--set", "checkpoint_every=1000"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    step = int((run / "checkpoints" / "latest").read_text().strip().split("-")[1])
    assert step >= 2 and max(_losses(run)) == step


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {"keep_document_boundaries": True, "mask_strategy": "bert", "schedule": "wsd"},
    {"arch": "bert", "schedule": "constant", "model_overrides": {"max_position_embeddings": 128}},
])
def test_options_run(tmp_path, overrides):
    cfg = PretrainConfig(**{**SMALL, "max_steps": 2, "checkpoint_every": 2, "holdout_every": 10, **overrides})
    assert pretrain(cfg, tmp_path) == 0
    losses = _losses(tmp_path)
    assert set(losses) == {1, 2} and all(0 < v < 20 for v in losses.values())
    assert (tmp_path / "final" / "config.json").is_file()


def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    from aveyb.cli import main
    from aveyb.pretrain.loop import SetupError

    with pytest.raises(SetupError, match=r"--resume: no checkpoint found in .*typo.*leave out --resume"):
        pretrain(PretrainConfig(**SMALL), tmp_path / "typo", resume=True)
    assert not (tmp_path / "typo" / "checkpoints").exists()
    # exit status 2 (usage), not 3 (a training failure), as docs/pretraining.md says
    assert main(["pretrain", "--config", "tiny", "--output-dir", str(tmp_path / "typo2"), "--resume"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_a_new_run_in_a_folder_with_checkpoints_exits_2(reference_run):
    from aveyb.cli import main

    assert main(["pretrain", "--config", "tiny", "--output-dir", str(reference_run)]) == 2
