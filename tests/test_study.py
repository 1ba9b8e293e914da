"""Studies: the specification and its errors, the built-in studies, a tiny study end to end,
resume after a kill, failures, the claims' statistics, and the submitit path (local mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aveyb.study import Study, StudyError
from aveyb.study.builtin import BUILTIN, SCALE_RECIPES, builtin_study
from aveyb.study.claims import CLAIMS
from aveyb.study.jobs import Job, finetune_jobs, pretrain_jobs
from aveyb.study.report import bootstrap_difference, compare, evaluate_claims
from aveyb.study.spec import apply_overrides

TINY_PRETRAIN = dict(
    model_preset="tiny", tokenizer="bundled:bpe-4k", sources=[{"type": "bundled"}], seq_len=32,
    global_batch_tokens=256, micro_batch_size=8, val_sequences=8, log_every=5, eval_every=10,
    checkpoint_every=10, tensorboard=False, progress_bar=False,
)


def tiny_spec(**changes) -> dict:
    spec = dict(
        name="tiny", scale="micro", reference="avey-b",
        variants=[{"name": "avey-b"}, {"name": "bert", "arch": "bert"}],
        pretrain=dict(TINY_PRETRAIN), token_budget=256 * 20,
        finetune=dict(tasks=["sentiment_rt-sample", "ner_wnut-sample"], preset="ci",
                      settings={"save_model": False}, lrs=[1e-3], seeds=[0, 1]),
        claims=["avey_b_beats_the_transformers"],
    )
    spec.update(changes)
    return spec


def write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "aveyb.cli", "study", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


# ---- the specification ----------------------------------------------------------------------------

def test_a_valid_spec_resolves_the_budget_into_steps():
    study = Study.from_dict(tiny_spec())
    cfg = study.pretrain_config(study.variant("bert"))
    assert cfg.arch == "bert" and cfg.max_steps == 20
    assert [j.id for j in pretrain_jobs(study)] == ["pretrain/avey-b", "pretrain/bert"]
    assert len(finetune_jobs(study)) == 2 * 2 * 1 * 2


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, r"study: unknown key\(s\) \['colour'\]"),
    ({"reference": "gpt"}, r"study.reference 'gpt' is not a variant"),
    ({"scale": "huge"}, r"study.scale must be one of"),
    ({"token_budget": -5}, r"study.token_budget must be a positive integer"),
    ({"variants": [{"name": "avey-b"}, {"name": "avey-b"}]}, r"study.variants\[1\].name 'avey-b' is used twice"),
    ({"variants": [{"name": "avey-b", "arch": "gpt2"}]}, r"study.variants\[0\].arch must be one of"),
    ({"variants": [{"name": "avey-b", "modle": {}}]}, r"study.variants\[0\]: unknown key\(s\) \['modle'\]"),
    ({"variants": [{"name": "avey-b", "model": {"dynamic_norm": "max"}}]}, r"variants\[avey-b\].model: .*dynamic_norm"),
    ({"variants": [{"name": "avey-b", "pretrain": {"mask_rate": 1.5}}]}, r"variants\[avey-b\].pretrain: mask_rate"),
    ({"variants": [{"name": "avey-b"}, {"name": "m", "pretrained": "x", "model": {"a": 1}}]},
     r"a pretrained variant is fine-tuned as is"),
    ({"pretrain": {**TINY_PRETRAIN, "seq_len": 30}}, r"study.pretrain: global_batch_tokens=256 is not a multiple"),
    ({"claims": ["avey_b_is_magic"]}, r"study.claims\[0\] unknown claim 'avey_b_is_magic'"),
])
def test_bad_specs_name_the_field(change, message):
    with pytest.raises(StudyError, match=message):
        Study.from_dict(tiny_spec(**change))


@pytest.mark.parametrize("finetune, message", [
    ({"tasks": [], "lrs": [1e-3], "seeds": [0]}, r"study.finetune.tasks must list at least one task"),
    ({"tasks": ["a"], "lrs": [0], "seeds": [0]}, r"study.finetune.lrs must be a list of positive"),
    ({"tasks": ["a"], "lrs": [1e-3], "seeds": ["zero"]}, r"study.finetune.seeds must list integer seeds"),
    ({"tasks": ["a"], "lrs": [1e-3], "seeds": [0], "settings": {"batch_sise": 2}},
     r"study.finetune.settings: unknown fine-tuning option\(s\) \['batch_sise'\]"),
    ({"tasks": ["a"], "lrs": [1e-3], "seeds": [0], "task_settings": {"b": {}}},
     r"study.finetune.task_settings.b is not one of the tasks"),
    ({"tasks": ["a"], "lr": [1e-3]}, r"study.finetune: unknown key\(s\) \['lr'\]"),
])
def test_bad_finetuning_blocks_name_the_field(finetune, message):
    with pytest.raises(StudyError, match=message):
        Study.from_dict(tiny_spec(finetune=finetune))


def test_a_yaml_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="broken.yaml: not valid YAML"):
        Study.from_yaml(path)
    path.write_text(yaml.safe_dump(tiny_spec(reference="nobody")))
    with pytest.raises(StudyError, match=r"broken.yaml: study.reference 'nobody'"):
        Study.from_yaml(path)


def test_set_reads_values_as_pretrain_and_finetune_do():
    base = builtin_study("baselines", "micro")
    study = apply_overrides(base, ["pretrain.lr=1e-3", "token_budget=", "finetune.settings.max_steps=400",
                                   "finetune.task_settings.pos_brown.query_prefix=Query: ",
                                   "pretrain.model_overrides.eps=1e-6"])
    assert study.pretrain["lr"] == 1e-3 and study.token_budget is None
    assert study.finetune.settings["max_steps"] == 400
    assert study.finetune.task_settings["pos_brown"]["query_prefix"] == "Query: "  # a string field: as typed
    assert study.pretrain["model_overrides"]["eps"] == 1e-6  # free-form: YAML, number-like strings as numbers
    with pytest.raises(StudyError, match=r"--set pretrain.lr=fast: pretrain.lr must be a number, got 'fast'"):
        apply_overrides(base, ["pretrain.lr=fast"])
    with pytest.raises(StudyError, match=r"finetune.settings.max_steps must be an int or null, got 2.5"):
        apply_overrides(base, ["finetune.settings.max_steps=2.5"])
    with pytest.raises(StudyError, match=r"--set expects key=value, got 'seeds'"):
        apply_overrides(base, ["seeds"])


@pytest.mark.parametrize("scale", list(SCALE_RECIPES))
@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_study_is_valid_at_every_scale(name, scale):
    study = builtin_study(name, scale)
    assert study.scale == scale and study.reference in [v.name for v in study.variants]
    assert any(v.pretrained and "minilm" in v.pretrained.lower() for v in study.variants)
    assert Study.from_dict(yaml.safe_load(study.to_yaml())).to_dict() == study.to_dict()  # YAML round trip
    for claim in study.claims:
        trained = [v.name for v in study.variants if v.needs_pretraining]
        pairs = CLAIMS[claim].comparisons(study.reference, trained)
        assert pairs and all(a in trained and b in trained for a, b in pairs), (claim, pairs)


def test_the_ablation_families_cover_the_paper():
    arrangement = [v.model["layer_arrangement"] for v in builtin_study("layer_arrangement").variants if v.model]
    assert sorted(arrangement) == sorted(["interleaved_static_first", "interleaved_dynamic_first", "static_only",
                                          "dynamic_only", "coupled"])
    norms = [v.model["dynamic_norm"] for v in builtin_study("dynamic_norm").variants if v.model]
    assert sorted(norms) == ["none", "signed_sum", "softmax", "sum"]
    rates = [v.pretrain["mask_rate"] for v in builtin_study("masking_rate").variants if v.pretrain]
    assert rates == [0.1, 0.2, 0.3, 0.4]
    lengths = builtin_study("sequence_length")
    steps = {lengths.pretrain_config(v).max_steps for v in lengths.variants if v.needs_pretraining}
    assert len(steps) == 1  # a fixed token budget: same steps of the same tokens per step
    assert [v.arch for v in builtin_study("baselines").variants if v.needs_pretraining] == \
        ["avey-b", "bert", "roberta", "modernbert", "neobert"]


def test_unknown_builtin_study_lists_the_known_ones():
    with pytest.raises(StudyError, match="built-in studies: .*baselines"):
        builtin_study("transformers")


# ---- statistics and claims ------------------------------------------------------------------------

def test_bootstrap_interval_contains_the_difference_and_shrinks_with_agreement():
    diff, low, high = bootstrap_difference([0.80, 0.82, 0.81], [0.70, 0.71, 0.69])
    assert low <= diff <= high and low > 0
    diff, low, high = bootstrap_difference([0.60, 0.90, 0.75], [0.70, 0.80, 0.72])
    assert low < 0 < high


def _claim_study() -> Study:
    return Study.from_dict(tiny_spec(claims=["avey_b_beats_the_transformers"]))


def test_a_claim_is_inconclusive_when_the_seeds_disagree():
    study = _claim_study()
    scores = {("avey-b", "sentiment_rt-sample"): {0: 0.60, 1: 0.90},
              ("bert", "sentiment_rt-sample"): {0: 0.85, 1: 0.65},
              ("avey-b", "ner_wnut-sample"): {0: 0.50, 1: 0.52},
              ("bert", "ner_wnut-sample"): {0: 0.51, 1: 0.50}}
    (claim,) = evaluate_claims(study, scores, {})
    assert claim["status"] == "inconclusive at this scale"
    assert claim["comparisons"][0]["low"] < 0 < claim["comparisons"][0]["high"]


def test_a_claim_is_supported_or_contradicted_only_when_the_interval_excludes_zero():
    study = _claim_study()
    better = {("avey-b", t): {0: 0.80, 1: 0.81, 2: 0.79} for t in ("sentiment_rt-sample", "ner_wnut-sample")}
    worse = {("bert", t): {0: 0.70, 1: 0.71, 2: 0.69} for t in ("sentiment_rt-sample", "ner_wnut-sample")}
    assert evaluate_claims(study, {**better, **worse}, {})[0]["status"] == "supported"
    swapped = {("bert", t): s for (_, t), s in better.items()} | {("avey-b", t): s for (_, t), s in worse.items()}
    assert evaluate_claims(study, swapped, {})[0]["status"] == "contradicted"
    assert evaluate_claims(study, better, {})[0]["status"] == "not run"  # bert never finished


def test_compare_uses_only_seeds_present_on_every_task():
    scores = {("a", "x"): {0: 1.0, 1: 0.0}, ("a", "y"): {0: 1.0}, ("b", "x"): {0: 0.0}, ("b", "y"): {0: 0.0}}
    result = compare(scores, "a", "b", ["x", "y"])
    assert result["seeds"] == (1, 1) and result["diff"] == pytest.approx(1.0)


# ---- end to end -----------------------------------------------------------------------------------

def _results(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in (root / "finetune").rglob("results.json")}


@pytest.mark.slow
def test_a_tiny_study_end_to_end_then_a_rerun_skips_everything(tmp_path):
    spec = write_spec(tmp_path, tiny_spec())
    out = tmp_path / "out"
    done = run_cli("run", str(spec), "--output-dir", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(_results(out)) == 8
    report = (out / "report" / "report.md").read_text()
    for text in ("## Pretraining", "avey-b", "bert", "sentiment_rt-sample", "ner_wnut-sample",
                 "## Against the reference", "## The paper's claims at this scale", "non-embedding"):
        assert text in report
    for name in ("pretraining.csv", "results.csv", "comparisons.csv", "claims.csv", "summary.json",
                 "pretraining_val_loss.png", "task_scores.png"):
        assert (out / "report" / name).is_file(), name
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["jobs"]["finished"] == summary["jobs"]["total"] == 10
    assert summary["pretraining"]["bert"]["params"]["non_embedding"] > 0

    status = run_cli("status", str(out))
    assert status.returncode == 0 and "10 job(s): 10 finished" in status.stdout

    before = _results(out)
    again = run_cli("run", str(spec), "--output-dir", str(out))
    assert again.returncode == 0 and "0 job(s) ran, 10 finished before" in again.stdout
    assert _results(out) == before

    rebuilt = run_cli("report", str(out), "--no-plots")
    assert rebuilt.returncode == 0 and (out / "report" / "report.md").is_file()

    # another study with the same jobs under other names runs nothing and says where its results came from
    renamed = tiny_spec(name="renamed", reference="ref", variants=[
        {"name": "ref", "model": {"layer_arrangement": "interleaved_static_first"}}, {"name": "bert", "arch": "bert"}])
    second = tmp_path / "second"
    reused = run_cli("run", str(write_spec(tmp_path, renamed)), "--output-dir", str(second), "--reuse", str(out))
    assert reused.returncode == 0 and "0 job(s) ran, 0 finished before, 10 reused" in reused.stdout, reused.stdout[-2000:]
    text = (second / "report" / "report.md").read_text()
    assert "## Jobs reused from other studies" in text and "10 job(s)" in text
    assert _results(second).keys() == {k.replace("avey-b", "ref") for k in before}


@pytest.mark.slow
def test_a_failed_job_leaves_the_others_finished_and_exits_non_zero(tmp_path):
    spec = tiny_spec(variants=[{"name": "avey-b"}, {"name": "ghost", "pretrained": str(tmp_path / "no-such-model")}],
                     claims=[], finetune=dict(tasks=["sentiment_rt-sample"], preset="ci",
                                              settings={"save_model": False}, lrs=[1e-3], seeds=[0]))
    out = tmp_path / "out"
    result = run_cli("run", str(write_spec(tmp_path, spec)), "--output-dir", str(out))
    assert result.returncode == 1
    assert "FAILED finetune/ghost/sentiment_rt-sample/lr1e-3/seed0" in result.stderr
    assert (out / "finetune" / "avey-b" / "sentiment_rt-sample" / "lr1e-3" / "seed0" / "results.json").is_file()
    failed = json.loads(next((out / "jobs" / "failed").glob("*.json")).read_text())
    assert failed["job"] == "finetune/ghost/sentiment_rt-sample/lr1e-3/seed0" and "no-such-model" in failed["error"]
    assert "failed: `finetune/ghost" in (out / "report" / "report.md").read_text()


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the study finished before it could be killed: {proc.stdout.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting to kill the study")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _start(spec: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aveyb.cli", "study", "run", str(spec), "--output-dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


@pytest.mark.slow
def test_resume_after_a_kill_in_pretraining_and_in_finetuning(tmp_path):
    spec = write_spec(tmp_path, tiny_spec(
        variants=[{"name": "avey-b"}], claims=[], token_budget=256 * 400,
        pretrain={**TINY_PRETRAIN, "checkpoint_every": 20, "eval_every": 100, "log_every": 20},
        finetune=dict(tasks=["sentiment_rt-sample"], preset="ci", settings={"save_model": False, "max_steps": 40},
                      lrs=[1e-3], seeds=[0, 1, 2])))
    out = tmp_path / "out"
    ckpts = out / "pretrain" / "avey-b" / "checkpoints"
    _kill_when(_start(spec, out), lambda: ckpts.is_dir() and any(p.name.startswith("step") for p in ckpts.iterdir()))
    assert not (out / "pretrain" / "avey-b" / "final").exists()

    first = out / "finetune" / "avey-b" / "sentiment_rt-sample" / "lr1e-3" / "seed0" / "results.json"
    _kill_when(_start(spec, out), first.is_file)
    log = (out / "logs" / "pretrain__avey-b.log").read_text()
    assert "resumed from" in log  # the second run continued the killed pretraining
    records = [json.loads(line) for line in (out / "pretrain" / "avey-b" / "metrics.jsonl").open()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 400, steps  # no step logged twice, none lost
    kept = first.stat().st_mtime_ns

    result = _start(spec, out)
    result.wait(timeout=600)
    assert result.returncode == 0, result.stdout.read()[-3000:]
    assert first.stat().st_mtime_ns == kept  # the finished run was not repeated
    assert len(list((out / "finetune").rglob("results.json"))) == 3


@pytest.mark.slow
def test_sigterm_stops_a_study_cleanly_and_it_resumes(tmp_path):
    spec = write_spec(tmp_path, tiny_spec(
        variants=[{"name": "avey-b"}], claims=[], token_budget=256 * 400,
        pretrain={**TINY_PRETRAIN, "checkpoint_every": 20, "eval_every": 100, "log_every": 20},
        finetune=dict(tasks=["sentiment_rt-sample"], preset="ci", settings={"save_model": False}, lrs=[1e-3],
                      seeds=[0])))
    out = tmp_path / "out"
    ckpts = out / "pretrain" / "avey-b" / "checkpoints"
    proc = _start(spec, out)
    deadline = time.time() + 300
    while not (ckpts.is_dir() and any(p.name.startswith("step") for p in ckpts.iterdir())):
        assert proc.poll() is None and time.time() < deadline, "the study ended before it could be stopped"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # the driver only: it stops its jobs itself
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1 and "stopped by a signal" in output, output[-2000:]
    assert "not started" not in output and not (out / "finetune").exists()
    assert "was interrupted" in (out / "logs" / "pretrain__avey-b.log").read_text()
    again = run_cli("run", str(spec), "--output-dir", str(out))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resumed from" in (out / "logs" / "pretrain__avey-b.log").read_text()
    assert not list((out / "jobs" / "failed").glob("*.json"))  # the interruption is cleared by the finished job


@pytest.mark.slow
def test_the_submitit_executor_runs_a_study_in_its_local_mode(tmp_path):
    pytest.importorskip("submitit")
    spec = write_spec(tmp_path, tiny_spec(
        variants=[{"name": "avey-b"}], claims=[],
        finetune=dict(tasks=["sentiment_rt-sample"], preset="ci", settings={"save_model": False}, lrs=[1e-3],
                      seeds=[0])))
    out = tmp_path / "out"
    result = run_cli("run", str(spec), "--output-dir", str(out), "--executor", "submitit", "--cluster", "local",
                     "--timeout-min", "20")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "through submitit (local)" in result.stdout
    assert (out / "pretrain" / "avey-b" / "final" / "config.json").is_file()
    assert (out / "finetune" / "avey-b" / "sentiment_rt-sample" / "lr1e-3" / "seed0" / "results.json").is_file()
    assert any((out / "submitit").rglob("*_result.pkl"))  # submitit ran the jobs and kept their results


@pytest.mark.slow
def test_a_dry_run_lists_the_jobs_and_runs_none(tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", str(write_spec(tmp_path, tiny_spec())), "--output-dir", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "to run    pretrain/avey-b" in result.stdout and "10 job(s): 10 to run" in result.stdout
    assert not out.exists()
    bad = run_cli("run", "baselines", "--output-dir", str(out), "--dry-run", "--set", "finetune.seeds=[x]")
    assert bad.returncode == 2 and "study.finetune.seeds must list integer seeds" in bad.stderr


def test_a_study_directory_refuses_another_study(tmp_path):
    out = tmp_path / "out"
    from aveyb.study.jobs import prepare

    prepare(Study.from_dict(tiny_spec()), out)
    with pytest.raises(StudyError, match="holds another study"):
        prepare(Study.from_dict(tiny_spec(token_budget=256 * 40)), out)
    prepare(Study.from_dict(tiny_spec(finetune={**tiny_spec()["finetune"], "seeds": [5]})), out)  # nothing fine-tuned yet
    done = out / "finetune" / "avey-b" / "news_cloze" / "lr0.002" / "seed5" / "results.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    with pytest.raises(StudyError, match=r"differs in \['finetune'\]"):
        prepare(Study.from_dict(tiny_spec()), out)
    prepare(Study.from_dict(tiny_spec(finetune={**tiny_spec()["finetune"], "seeds": [5]}, notes=["why"])), out)


def test_job_ids_round_trip():
    job = Job("finetune", "avey-b", "news_cloze", 2e-3, 1)
    assert Job.from_id(job.id) == job and Job.from_id("pretrain/bert") == Job("pretrain", "bert")
    with pytest.raises(StudyError, match="not a study job id"):
        Job.from_id("evaluate/x")


def test_a_job_running_elsewhere_is_not_started_twice(tmp_path):
    from aveyb.study.jobs import job_lock, prepare, run_job

    prepare(Study.from_dict(tiny_spec()), tmp_path)
    job = Job("pretrain", "avey-b")
    with job_lock(tmp_path, job):
        with pytest.raises(StudyError, match="pretrain/avey-b is running in another process"):
            run_job(tmp_path, job.id)
    assert not (tmp_path / "pretrain" / "avey-b" / "checkpoints").exists()


# ---- reuse between studies ---------------------------------------------------------------------

def test_jobs_that_compute_the_same_thing_have_the_same_key_across_studies():
    from aveyb.study.reuse import job_key

    base, arrange, norm = (builtin_study(n, "micro") for n in ("baselines", "layer_arrangement", "dynamic_norm"))
    ref = job_key(base, Job("pretrain", "avey-b"))
    assert job_key(arrange, Job("pretrain", "interleaved_static_first")) == ref
    assert job_key(norm, Job("pretrain", "sum")) == ref
    assert job_key(arrange, Job("pretrain", "static_only")) != ref
    assert job_key(norm, Job("pretrain", "softmax")) != ref
    minilm = Job("finetune", "minilm", "pos_brown", 5e-4, 0)
    assert job_key(base, minilm) == job_key(norm, minilm)
    tuned = Job("finetune", "avey-b", "pos_brown", 2e-3, 1)
    assert job_key(base, tuned) == job_key(arrange, Job("finetune", "interleaved_static_first", "pos_brown", 2e-3, 1))
    assert job_key(base, tuned) != job_key(base, Job("finetune", "avey-b", "pos_brown", 2e-3, 2))
    assert job_key(base, tuned) != job_key(base, Job("finetune", "bert", "pos_brown", 2e-3, 1))
    longer = apply_overrides(base, ["finetune.settings.max_steps=400"])
    assert job_key(longer, tuned) != job_key(base, tuned)
    other_budget = apply_overrides(base, ["token_budget=4096000"])
    assert job_key(other_budget, Job("pretrain", "avey-b")) != ref


def _fake_finished(root: Path, study: Study, jobs: list[Job]) -> None:
    from aveyb.study.jobs import prepare

    prepare(study, root)
    for job in jobs:
        d = job.directory(root)
        if job.kind == "pretrain":
            (d / "final").mkdir(parents=True)
            (d / "final" / "config.json").write_text("{}")
            (d / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0}\n')
            (d / "checkpoints" / "step_1").mkdir(parents=True)
        else:
            d.mkdir(parents=True)
            (d / "results.json").write_text(json.dumps({"task": job.task, "seed": job.seed}))


def test_reuse_copies_the_finished_jobs_of_another_study_and_only_those(tmp_path):
    from aveyb.study.reuse import REUSED_FILE, reuse

    spec = tiny_spec()
    first = Study.from_dict(spec)
    done = [Job("pretrain", "avey-b"), Job("finetune", "avey-b", "sentiment_rt-sample", 1e-3, 0),
            Job("finetune", "bert", "sentiment_rt-sample", 1e-3, 0)]
    _fake_finished(tmp_path / "a", first, done)
    # the same reference under another name (its default arrangement spelled out), and bert pretrained longer
    second = Study.from_dict({**spec, "name": "other", "reference": "ref", "variants": [
        {"name": "ref", "model": {"layer_arrangement": "interleaved_static_first"}},
        {"name": "bert", "arch": "bert", "pretrain": {"max_steps": 40}}]})
    copied = reuse(second, tmp_path / "b", [tmp_path / "a"], log=lambda m: None)
    assert sorted(copied) == ["finetune/ref/sentiment_rt-sample/lr1e-3/seed0", "pretrain/ref"]
    ref = tmp_path / "b" / "pretrain" / "ref"
    assert (ref / "final" / "config.json").is_file() and (ref / "metrics.jsonl").is_file()
    assert not (ref / "checkpoints").exists()
    origin = json.loads((ref / REUSED_FILE).read_text())
    assert origin["job"] == "pretrain/avey-b" and Path(origin["study_dir"]) == (tmp_path / "a").resolve()
    assert not (tmp_path / "b" / "finetune" / "bert").exists()   # other pretraining: other job
    assert reuse(second, tmp_path / "b", [tmp_path / "a"], log=lambda m: None) == []  # already here


@pytest.mark.slow
def test_a_dry_run_shows_what_would_be_reused_and_a_bad_reuse_dir_is_an_error(tmp_path):
    spec = tiny_spec()
    _fake_finished(tmp_path / "a", Study.from_dict(spec), [Job("pretrain", "avey-b")])
    path = write_spec(tmp_path, {**spec, "name": "other"})
    shown = run_cli("run", str(path), "--output-dir", str(tmp_path / "b"), "--reuse", str(tmp_path / "a"), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "  reuse     pretrain/avey-b" in shown.stdout and "  to run    pretrain/bert" in shown.stdout
    bad = run_cli("run", str(path), "--output-dir", str(tmp_path / "b"), "--reuse", str(tmp_path / "nothing"))
    assert bad.returncode != 0 and "--reuse" in bad.stderr and "not a study directory" in bad.stderr


def test_a_job_finished_meanwhile_is_not_run_again(tmp_path):
    from aveyb.study.jobs import run_job

    study = Study.from_dict(tiny_spec())
    job = Job("finetune", "avey-b", "sentiment_rt-sample", 1e-3, 0)
    _fake_finished(tmp_path, study, [job])
    before = (job.directory(tmp_path) / "results.json").read_text()
    assert run_job(tmp_path, job.id) == job.id   # no pretrained model exists: running it would fail
    assert (job.directory(tmp_path) / "results.json").read_text() == before


def test_a_job_another_run_is_training_is_left_to_it_not_failed(tmp_path):
    from aveyb.study.executors import LocalExecutor
    from aveyb.study.jobs import job_lock, prepare

    prepare(Study.from_dict(tiny_spec()), tmp_path)
    job = Job("pretrain", "avey-b")
    logs = []
    with job_lock(tmp_path, job):
        failed = LocalExecutor(gpus=0, log=logs.append).run(tmp_path, [job])
    assert failed == {} and not (tmp_path / "jobs" / "failed").exists()
    assert any("runs in another process: left to that run" in line for line in logs), logs
    assert not (tmp_path / "pretrain" / "avey-b" / "checkpoints").exists()


def test_cpu_jobs_split_the_threads(monkeypatch):
    from aveyb.study.executors import LocalExecutor

    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert LocalExecutor(gpus=0, cpu_jobs=2).slots == [{"OMP_NUM_THREADS": "2"}] * 2
    assert LocalExecutor(gpus=0, cpu_jobs=8).slots == [{"OMP_NUM_THREADS": "1"}] * 8
    assert LocalExecutor(gpus=0).slots == [{}]
    assert LocalExecutor(gpus=2, jobs_per_gpu=2).slots == [{"CUDA_VISIBLE_DEVICES": g} for g in "0011"]


def test_a_variant_may_have_its_own_learning_rates():
    spec = tiny_spec(variants=[{"name": "avey-b"}, {"name": "trained", "arch": "bert", "lrs": [5e-5]}])
    lrs = {(j.variant, j.lr) for j in finetune_jobs(Study.from_dict(spec))}
    assert lrs == {("avey-b", 1e-3), ("trained", 5e-5)}
    with pytest.raises(StudyError, match=r"study.variants\[1\].lrs must be a list of positive learning rates"):
        Study.from_dict(tiny_spec(variants=[{"name": "avey-b"}, {"name": "b", "arch": "bert", "lrs": [0]}]))
    minilm = builtin_study("baselines", "micro").variant("minilm")
    assert minilm.lrs == [5e-4] and builtin_study("baselines", "micro").finetune.lrs == [2e-3]
