"""Own data in: task folders found by their meta.json, single files (JSONL, CSV, TSV, Parquet),
Hugging Face dataset ids with column flags, BEIR folders evaluated zero-shot, carved splits,
and errors that name the file, the row, the field, the value and what is allowed."""

import json
from pathlib import Path

import pytest

from aveyb.tasks.config import build_config
from aveyb.tasks.data import TaskDataError
from aveyb.tasks.registry import get_task, list_tasks
from aveyb.tasks.runner import run_finetune
from aveyb.tasks.testing import make_tiny_bert

KIT = Path("/work/shared/data")
QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model"))


def cfg(**kw):
    return build_config("ci", {"save_model": False, **kw})


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def movie_rows(n, start=0):
    return [{"id": f"movies-{i}", "text": f"a {'good' if i % 2 else 'bad'} film number {i}", "rating": 1.5,
             "label": "positive" if i % 2 else "negative"} for i in range(start, start + n)]


def kit_folder(root: Path, name: str, meta: dict | None, splits=("train", "validation", "test"), rows=movie_rows):
    folder = root / "tasks" / name
    for i, split in enumerate(splits):
        write_jsonl(folder / f"{split}.jsonl", rows(12 if split == "train" else 6, 100 * i))
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


SENTIMENT_META = {"task_type": "sequence_classification", "labels": ["negative", "positive"],
                  "metric": "accuracy (also macro-F1); the rating column allows regression (Pearson r)"}


# ---- task folders are discovered by their meta.json ----------------------------------------------
def test_any_kit_folder_is_a_task_by_name(tmp_path):
    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    kit_folder(tmp_path, "brand_new_task", {"task_type": "sentence_pair_classification (like QQP)",
                                            "labels": ["negative", "positive"],
                                            "metric": "accuracy and F1 of the positive class"})
    assert {"sentiment_movies", "brand_new_task"} <= set(list_tasks(tmp_path))
    assert "sentiment_movies" not in list_tasks(None)
    task = get_task("sentiment_movies", tmp_path)
    assert (task.family, task.main_metric, task.source, task.labels) == (
        "sequence_classification", "accuracy", "local", ["negative", "positive"])
    assert get_task("brand_new_task", tmp_path).options == {"positive_label": "positive"}


@pytest.mark.parametrize("meta,family,metric,options", [
    ({"task_type": "token_classification", "labels": ["NOUN", "VERB", "."], "metric": "token accuracy (all tokens)"},
     "token_classification", "token_accuracy", {"bio": False}),
    ({"task_type": "token_classification", "labels": ["O", "B-person", "I-person"], "metric": "entity-level F1"},
     "token_classification", "paper_macro_f1", {"bio": True}),
    ({"task_type": "sequence_classification", "labels": ["ham", "spam"], "metric": "F1 of spam class"},
     "sequence_classification", "accuracy", {"positive_label": "spam"}),
    ({"task_type": "extractive_qa (span extraction)", "metric": "exact match"}, "question_answering", "paper_f1", {}),
    ({"task_type": "sequence_classification", "labels": ["a", "b"], "main_metric": "macro_f1"},
     "sequence_classification", "macro_f1", {}),
])
def test_meta_json_gives_family_metric_and_options(tmp_path, meta, family, metric, options):
    kit_folder(tmp_path, "t", meta)
    task = get_task("t", tmp_path)
    assert (task.family, task.main_metric, task.options) == (family, metric, options)


@pytest.mark.parametrize("meta,match", [
    ({"task_type": "regression"}, r"meta.json: task_type = 'regression' is not a task family; allowed: "
                                  r"sequence_classification"),
    ({"task_type": "sequence_classification", "main_metric": "bleu"}, r"main_metric = 'bleu'; allowed"),
])
def test_bad_meta_json_is_a_clear_error(tmp_path, meta, match):
    kit_folder(tmp_path, "t", meta)
    with pytest.raises(TaskDataError, match=match):
        get_task("t", tmp_path)


def test_unknown_task_lists_what_exists(tmp_path):
    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    with pytest.raises(TaskDataError, match=r"unknown task 'sentiment_moviez'.*Local tasks in .*: sentiment_movies"):
        get_task("sentiment_moviez", tmp_path)


@pytest.mark.slow
def test_sentiment_movies_finetunes_by_name(bert, tmp_path):
    data = tmp_path / "data"
    kit_folder(data, "sentiment_movies", SENTIMENT_META)
    rec = run_finetune(bert, "sentiment_movies", tmp_path / "out", cfg(), data_dir=data, **QUIET)
    assert rec["task"] == "sentiment_movies" and rec["labels"] == ["negative", "positive"]
    assert "test/accuracy" in rec["metrics"] and rec["splits_carved"] == {}


@pytest.mark.skipif(not (KIT / "tasks" / "sentiment_movies").is_dir(), reason="offline data kit not here")
def test_the_kits_sentiment_movies_is_discovered():
    task = get_task("sentiment_movies", KIT)
    assert task.family == "sequence_classification" and task.labels == ["negative", "positive"]


def test_cli_tasks_lists_the_data_dir(tmp_path, capsys):
    from aveyb.cli import main

    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    assert main(["tasks", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sentiment_movies" in out and "sst2" in out and "sentiment_rt-sample" in out


# ---- a single file, a Hub dataset id, column flags, carved splits -------------------------------
REVIEWS = [{"review": f"{'great' if i % 3 else 'awful'} movie {i}", "sentiment": "pos" if i % 3 else "neg",
            "id": f"u{i}"} for i in range(30)]


def write_table(path: Path, rows) -> Path:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_list(rows)
    if path.suffix == ".parquet":
        ds.to_parquet(str(path))
    elif path.suffix in (".csv", ".tsv"):
        ds.to_csv(str(path), index=False, sep="\t" if path.suffix == ".tsv" else ",")
    else:
        write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_every_file_format_reads_the_same_rows(tmp_path, suffix):
    from aveyb.tasks.config import FinetuneConfig
    from aveyb.tasks.task import LoadContext

    path = write_table(tmp_path / f"reviews{suffix}", REVIEWS)
    c = FinetuneConfig(text_columns=["review"], label_column="sentiment")  # no row caps
    task = get_task(str(path), config=c)
    assert (task.name, task.family, task.source) == ("reviews", "sequence_classification", "file")
    splits = task.load(LoadContext(config=c))
    rows = sorted(splits.train + splits.validation + splits.test, key=lambda r: int(r["id"][1:]))
    assert rows == [{"id": r["id"], "text": r["review"], "label": r["sentiment"]} for r in REVIEWS]
    assert splits.carved == {"test": "10% of train, seed 42", "validation": "5% of train, seed 42"}


def test_a_csv_with_column_flags_end_to_end(bert, tmp_path, capsys):
    from aveyb.cli import main

    path = write_table(tmp_path / "my_reviews.csv", REVIEWS)
    out = tmp_path / "out"
    assert main(["finetune", "--model", bert, "--task", str(path), "--output-dir", str(out), "--preset", "ci",
                 "--text-column", "review", "--label-column", "sentiment", "--no-save"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["task"] == "my_reviews" and rec["labels"] == ["neg", "pos"]
    assert rec["splits_carved"]["validation"] == "5% of train, seed 42" and "test/accuracy" in rec["metrics"]
    assert rec["config"]["label_column"] == "sentiment"


@pytest.mark.parametrize("rows,kw,family", [
    ([{"tokens": ["a", "b"], "tags": ["O", "B-x"]}] * 4, {}, "token_classification"),
    ([{"question": "q?", "context": "a b", "answers": {"text": ["a"], "answer_start": [0]}}] * 4, {},
     "question_answering"),
    ([{"t": "x", "y": "1"}] * 4, {"text_columns": ["t"], "label_column": "y"}, "sequence_classification"),
    ([{"words": ["a"], "labels": ["O"]}] * 4, {"tokens_column": "words", "tags_column": "labels"},
     "token_classification"),
    ([{"label": "a", "tokens": ["a"], "tags": ["O"]}] * 4, {"task_type": "token_classification"},
     "token_classification"),
])
def test_the_family_is_inferred_from_the_columns(tmp_path, rows, kw, family):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert get_task(str(path), config=cfg(**kw)).family == family


@pytest.mark.parametrize("rows,match", [
    ([{"label": "a", "tokens": ["a"], "tags": ["O"]}] * 4,
     r"fit several task types \(sequence_classification, token_classification\); pass --task-type"),
    ([{"a": 1, "b": 2}] * 4, r"cannot tell the task type from the columns \['a', 'b'\]; pass --task-type"),
])
def test_an_ambiguous_file_asks_for_the_task_type(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(TaskDataError, match=match):
        get_task(str(path), config=cfg())


def fake_hub(splits: dict):
    """A load_split serving in-memory datasets.Dataset splits (ClassLabel labels) for one id."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    data = {name: datasets.Dataset.from_list(rows, features=features) for name, rows in splits.items()}

    def load(path, name, split):
        assert (path, name) == ("someone/reviews", "en")
        if split not in data:
            raise FileNotFoundError(split)
        return data[split]
    return load


@pytest.mark.slow
def test_a_hub_dataset_id_with_a_split_map(bert, tmp_path):
    rows = [{"sentence": f"{'good' if i % 2 else 'bad'} film {i}", "label": i % 2} for i in range(20)]
    load = fake_hub({"train": rows, "dev": rows[:6]})
    c = cfg(dataset_config="en", splits={"train": "train", "validation": "dev"})
    rec = run_finetune(bert, "someone/reviews", tmp_path, c, load_split=load, **QUIET)
    assert rec["task"] == "someone/reviews" and rec["labels"] == ["neg", "pos"]
    assert rec["splits_carved"] == {"test": "10% of train, seed 42"}  # no test split: carved
    bad = cfg(dataset_config="en", splits={"train": "train", "test": "nope"})
    with pytest.raises(TaskDataError, match=r"someone/reviews: no split 'nope'; map the splits with --split"):
        run_finetune(bert, "someone/reviews", tmp_path / "bad", bad, load_split=load, **QUIET)


def test_split_flag_parsing():
    from aveyb.tasks.cli import parse_split_map

    assert parse_split_map(["train=train,validation=dev", "test=test"]) == {
        "train": "train", "validation": "dev", "test": "test"}
    with pytest.raises(ValueError, match="expected OURS=THEIRS"):
        parse_split_map(["training=train"])


# ---- BEIR folders zero-shot, --max-steps 0 ------------------------------------------------------
def beir_folder(root: Path, train: bool = False) -> Path:
    docs = [{"_id": f"d{i}", "title": "", "text": f"document about topic {i}"} for i in range(8)]
    write_jsonl(root / "corpus.jsonl", docs)
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"topic {i}"} for i in range(8)])
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                             "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    if train:
        (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                  "".join(f"q{i}\td{i}\t1\n" for i in range(4, 8)))
    return root


def test_a_beir_folder_with_only_test_is_scored_zero_shot(bert, tmp_path):
    folder = beir_folder(tmp_path / "my_beir")
    rec = run_finetune(bert, str(folder), tmp_path / "out", cfg(), **QUIET)
    assert rec["task"] == "my_beir" and rec["family"] == "retrieval"
    assert rec["metrics"]["train_steps"] == 0 and rec["metrics"]["test/recall@10"] == 1.0
    assert not any(k.startswith("validation/") for k in rec["metrics"])


def test_a_beir_folder_with_train_qrels_carves_validation(tmp_path):
    from aveyb.tasks.task import LoadContext

    task = get_task(str(beir_folder(tmp_path / "b", train=True)))
    splits = task.load(LoadContext(config=cfg()))
    assert len(splits.train) == 3 and len(splits.validation.queries) == 1 and len(splits.test.queries) == 4
    assert splits.carved == {"validation": "5% of train queries, seed 42"}


def test_max_steps_zero_evaluates_without_training(bert, tmp_path):
    data = tmp_path / "data"
    kit_folder(data, "sentiment_movies", SENTIMENT_META)
    rec = run_finetune(bert, "sentiment_movies", tmp_path / "out", cfg(max_steps=0), data_dir=data, **QUIET)
    assert rec["metrics"]["train_steps"] == 0 and "train_loss" not in rec["metrics"]
    assert "test/accuracy" in rec["metrics"]


# ---- every bad row, in one message ---------------------------------------------------------------
def test_every_bad_row_is_reported_up_to_a_limit(tmp_path):
    rows = [{"id": f"r{i}", "text": "ok", "label": "meh"} for i in range(25)] + [{"id": "r99", "text": "", "label": "positive"}]
    kit_folder(tmp_path, "t", SENTIMENT_META, rows=lambda n, start: rows)
    from aveyb.tasks.task import LoadContext

    with pytest.raises(TaskDataError) as info:
        get_task("t", tmp_path).load(LoadContext(config=cfg()))
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'tasks' / 't' / 'train.jsonl'}: 26 bad rows:")
    assert "row 'r0' field 'label' = 'meh' is not in the label set ['negative', 'positive']" in msg
    assert "... and 6 more" in msg and len(msg.splitlines()) == 22


@pytest.mark.parametrize("meta", [SENTIMENT_META, None])
def test_a_missing_label_names_the_row_with_or_without_meta(tmp_path, meta):
    from aveyb.tasks.task import LoadContext

    rows = lambda n, start: [{"id": "a", "text": "x", "label": "positive"}, {"id": "b", "text": "y"},
                             {"id": "c", "text": "z", "label": None}]
    kit_folder(tmp_path, "t", meta, rows=rows)
    with pytest.raises(TaskDataError, match=r"2 bad rows:\n  row 'b' field 'label' = None is missing"):
        get_task("t", tmp_path).load(LoadContext(config=cfg()))


def test_task_labels_reports_missing_labels_not_a_type_error():
    from aveyb.tasks.registry import task_labels
    from aveyb.tasks.task import Task, TaskSplits

    task = Task("t", "sequence_classification", loader=None)
    splits = TaskSplits([{"id": "a", "label": "x"}, {"id": "b", "label": None}], [], None)
    with pytest.raises(TaskDataError, match=r"t/train: row 'b' field 'label' is missing"):
        task_labels(task, splits)


def test_malformed_csv_and_unsupported_files(tmp_path):
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    with pytest.raises(TaskDataError, match=r"data.xlsx: unsupported file type; allowed: .jsonl"):
        get_task(str(bad))
    with pytest.raises(TaskDataError, match=r"task 'missing.csv': no such file or folder"):
        get_task("missing.csv")


# ---- the command line: one clear line for every mistake --------------------------------------------
@pytest.mark.parametrize("extra,match", [
    (["--set", "lr=-1"], "aveyb finetune: error: FinetuneConfig.lr=-1 must be a positive number"),
    (["--set", "nokey"], "aveyb finetune: error: --set expects key=value, got 'nokey'"),
    (["--set", "learning_rate=1"], "aveyb finetune: error: unknown fine-tuning option(s) ['learning_rate']"),
    (["--preset", "nope"], "aveyb finetune: error: unknown fine-tuning preset 'nope'"),
    (["--task", "no_such_task"], "aveyb finetune: error: unknown task 'no_such_task'."),
    (["--model", "runs/typo/final"], "aveyb finetune: error: --model runs/typo/final: no such folder"),
    (["--split", "training=x"], "aveyb finetune: error: --split 'training=x': expected OURS=THEIRS"),
])
def test_cli_errors_are_one_line(bert, tmp_path, capsys, extra, match):
    from aveyb.cli import main

    args = {"--model": bert, "--task": "sst2", "--output-dir": str(tmp_path / "o")}
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[flag] = value
    rest = [x for flag, value in zip(extra[::2], extra[1::2]) if flag not in ("--model", "--task")
            for x in (flag, value)]
    argv = ["finetune"] + [x for kv in args.items() for x in kv] + rest
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(match) and "Traceback" not in err and len(err.strip().splitlines()) == 1
