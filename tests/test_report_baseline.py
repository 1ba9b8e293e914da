"""The majority-class baseline: computed by hand, stored in results.json, shown in every table
and in the scores plot; lr_curves.png only when several learning rates ran; zero-shot runs
(no validation split) still reach the report."""

import json

import pytest

from aveyb.evaluation.baseline import majority_label, majority_metrics
from aveyb.tasks.task import Task, TaskSplits


def sc_task(**options):
    return Task("t", "sequence_classification", loader=None, options=options)


def test_majority_baseline_by_hand():
    train = [{"label": "a"}, {"label": "a"}, {"label": "b"}]
    test = [{"label": "a"}, {"label": "b"}, {"label": "b"}, {"label": "b"}]
    splits = TaskSplits(train, test[:2], test)
    out = majority_metrics(sc_task(positive_label="b"), splits, ["a", "b"])
    assert majority_label(sc_task(), train) == "a"
    assert out["test/majority_accuracy"] == 0.25 and out["validation/majority_accuracy"] == 0.5
    assert out["test/majority_f1"] == 0.0  # never predicts the positive class
    assert out["test/majority_macro_f1"] == pytest.approx((2 * 1 / (2 + 3) + 0) / 2)


def test_majority_tag_for_token_classification():
    task = Task("t", "token_classification", loader=None, options={"bio": True})
    train = [{"tags": ["O", "O", "B-x"]}, {"tags": ["O"]}]
    test = [{"tags": ["O", "B-x", "I-x", "O"]}]
    out = majority_metrics(task, TaskSplits(train, test, test), ["O", "B-x", "I-x"])
    assert out["test/majority_token_accuracy"] == 0.5 and out["test/majority_f1"] == 0.0


def test_no_baseline_for_qa_and_retrieval():
    task = Task("t", "question_answering", loader=None)
    assert majority_metrics(task, TaskSplits([{"x": 1}], [{"x": 1}], None), None) == {}


def record(model, lr, seed, val, test, base=None, task="t", family="sequence_classification"):
    metrics = {"test/accuracy": test}
    if val is not None:
        metrics["validation/accuracy"] = val
    if base is not None:
        metrics["test/majority_accuracy"] = base
    return {"model_name": model, "task": task, "family": family, "main_metric": "accuracy", "lr": lr,
            "seed": seed, "metrics": metrics}


def write_records(root, recs):
    for i, rec in enumerate(recs):
        path = root / rec["model_name"] / rec["task"] / f"lr{rec['lr']}" / f"seed{rec['seed']}{i}"
        path.mkdir(parents=True)
        (path / "results.json").write_text(json.dumps(rec))


def test_report_shows_the_baseline_and_skips_a_single_lr_curve(tmp_path):
    from aveyb.evaluation.report import write_report

    write_records(tmp_path, [record("m1", 1e-4, 0, 0.8, 0.7, base=0.5), record("m2", 1e-4, 0, 0.6, 0.9, base=0.5)])
    files = write_report(tmp_path)
    md = files["markdown"].read_text()
    assert "| *majority baseline* | 50.00 |" in md  # main table
    assert "| *majority baseline* | - | - | 50.00 | - | - |" in md  # per-task table: accuracy, f1, macro_f1
    assert (tmp_path / "scores.png").is_file() and not (tmp_path / "lr_curves.png").exists()
    assert [k for k in files if k.startswith("plot")] == ["plot0"]


def test_report_keeps_the_lr_curve_with_several_lrs(tmp_path):
    from aveyb.evaluation.report import write_report

    write_records(tmp_path, [record("m", 1e-4, 0, 0.8, 0.7), record("m", 5e-4, 0, 0.6, 0.9)])
    files = write_report(tmp_path)
    assert (tmp_path / "lr_curves.png").is_file() and "plot1" in files
    assert "| *majority baseline* | - |" in files["markdown"].read_text()  # no baseline recorded


def test_a_zero_shot_run_without_validation_is_reported(tmp_path):
    from aveyb.evaluation.sweep import select

    (row,) = select([record("m", 1e-4, 0, None, 0.4)])
    assert row["split"] == "test" and row["score"]["median"] == 0.4 and row["best_lr"] == 1e-4


@pytest.mark.slow
def test_results_json_records_the_baseline(tmp_path):
    from aveyb.tasks.config import build_config
    from aveyb.tasks.runner import run_finetune
    from aveyb.tasks.testing import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    rows = [{"id": str(i), "text": f"word {i}", "label": "a" if i % 4 else "b"} for i in range(40)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = run_finetune(str(bert), str(path), tmp_path / "out", build_config("ci", {"save_model": False}),
                       log=lambda *_: None)
    assert rec["baseline"]["label"] == "a" and 0 < rec["metrics"]["test/majority_accuracy"] <= 1
