"""Task registry and data loading: every Hub task on a fixture in its exact Hub format, local
tasks (plain and gzip JSON Lines, BEIR folders), the needle-in-a-haystack generator, the
fine-tuning config, and clear errors on malformed data."""

import gzip
import json
from pathlib import Path

import pytest

from aveyb.tasks.config import FinetuneConfig, build_config, list_presets, parse_set_items
from aveyb.tasks.data import RetrievalData, TaskDataError, split_train_validation
from aveyb.tasks.registry import REGISTRY, LoadContext, get_task, task_labels
from aveyb.tasks.testing import fixture_loader

HUB = Path(__file__).parent / "fixtures" / "tasks" / "hub"
PAPER_TASKS = ["mnli", "qqp", "sst2", "conll2003", "ontonotes5", "uner_en", "squad", "squad_v2", "record",
               "msmarco", "nq", "mldr"]
SAMPLES = ["sentiment_rt-sample", "trec_qc-sample", "sms_spam-sample", "ner_wnut-sample", "paraphrase_bible-sample",
           "news_retrieval-sample"]


def load(name, **cfg):
    return get_task(name).load(LoadContext(config=FinetuneConfig(**cfg), load_split=fixture_loader(HUB)))


def test_registry_covers_the_paper_tasks_and_the_samples():
    for name in PAPER_TASKS + SAMPLES + ["niah1", "niah2"]:
        assert name in REGISTRY
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_hub_fixture_loads(name):
    splits = load(name)
    task = get_task(name)
    assert splits.train and splits.validation is not None and splits.test is not None
    if task.family == "retrieval":
        assert all(isinstance(p, tuple) and len(p) == 2 for p in splits.train)
        assert isinstance(splits.test, RetrievalData)
        splits.test.check(name)
        assert "99" not in splits.test.queries  # unjudged BEIR queries are dropped
    labels = task_labels(task, splits, None)
    if task.family == "sequence_classification":
        assert all(ex["label"] in labels for ex in splits.train + splits.test)
    if task.family == "token_classification":
        assert all(t in labels for ex in splits.train for t in ex["tags"])


def test_hub_conversions_exact_values():
    mnli = load("mnli")
    assert mnli.test[1] == {"id": "1", "label": "contradiction", "text_a": "the man is sleeping in the park",
                            "text_b": "a man is running"}
    conll = load("conll2003")
    assert conll.test[0]["tags"] == ["B-ORG", "O", "B-MISC", "O", "O"]  # ClassLabel ints -> names
    onto = load("ontonotes5")
    assert onto.test[1]["tags"] == ["O", "O", "B-MONEY", "I-MONEY", "I-MONEY", "O"]  # tner label.json order
    v2 = load("squad_v2")
    assert v2.test[1]["answers"] == {"text": [], "answer_start": []}
    rec = load("record")
    ex = rec.test[0]
    assert ex["answers"]["text"] == ["Afghanistan", "Afghanistan"]  # every entity span of the answer
    for t, s in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
        assert ex["context"][s:s + len(t)] == t
    nq = load("nq")
    assert nq.test.qrels["1185869"] == {"0": 1, "1": 1}


def test_protocol_split_is_95_5_with_seed_42():
    rows = list(range(100))
    tr, va = split_train_validation(rows, 0.05, 42)
    assert len(tr) == 95 and len(va) == 5 and sorted(tr + va) == rows
    assert split_train_validation(rows, 0.05, 42) == (tr, va)


def test_glue_unlabelled_test_split_is_refused():
    from aveyb.tasks.hub import glue_rows

    ds = fixture_loader(HUB)("nyu-mll/glue", "mnli", "test_matched")
    with pytest.raises(TaskDataError, match="label -1"):
        glue_rows(ds, "mnli")


def test_hub_label_outside_set():
    from aveyb.tasks.hub import glue_rows

    with pytest.raises(TaskDataError, match="outside the label set"):
        glue_rows([{"sentence": "x", "label": 7, "idx": 3}], "sst2")


def test_record_answer_not_in_passage():
    from aveyb.tasks.hub import record_rows

    row = {"passage": "abc", "query": "@placeholder", "answers": ["zzz"], "idx": {"passage": 1, "query": 2},
           "entity_spans": {"text": [], "start": [], "end": []}}
    with pytest.raises(TaskDataError, match=r"row '1-2' answer 'zzz' not found"):
        record_rows([row])


def _write_jsonl(path: Path, rows, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_local_tasks_plain_and_gzip(tmp_path):
    folder = tmp_path / "tasks" / "sentiment_rt"
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "positive" if i % 2 else "negative"} for i in range(6)]
    _write_jsonl(folder / "train.jsonl", rows, gz=True)
    _write_jsonl(folder / "validation.jsonl", rows[:2])
    _write_jsonl(folder / "test.jsonl", rows[2:4])
    (folder / "meta.json").write_text(json.dumps({"labels": ["negative", "positive"]}))
    task = get_task("sentiment_rt", tmp_path)  # found by its meta.json
    splits = task.load(LoadContext(data_dir=tmp_path, config=FinetuneConfig()))
    assert len(splits.train) == 6 and len(splits.validation) == 2 and len(splits.test) == 2
    assert task_labels(task, splits, tmp_path) == ["negative", "positive"]


def test_local_task_needs_a_data_dir(monkeypatch):
    monkeypatch.delenv("AVEYB_DATA_DIR", raising=False)
    with pytest.raises(TaskDataError, match="AVEYB_DATA_DIR"):
        get_task("trec_qc").load(LoadContext(data_dir=None, config=FinetuneConfig()))


def test_malformed_json_names_the_line(tmp_path):
    folder = tmp_path / "tasks" / "trec_qc"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text('{"id": "a", "text": "x", "label": "NUM"}\n{broken\n')
    with pytest.raises(TaskDataError, match="line 2 is not valid JSON"):
        get_task("trec_qc", tmp_path).load(LoadContext(data_dir=tmp_path, config=FinetuneConfig()))


@pytest.mark.parametrize("name", ["sentiment_rt", "trec_qc", "sms_spam", "ner_wnut", "paraphrase_bible",
                                  "news_retrieval"])
def test_bundled_samples_load(name):
    splits = get_task(name + "-sample").load(LoadContext(config=FinetuneConfig()))
    assert splits.train and splits.validation is not None and splits.test is not None
    meta = json.loads((Path(__file__).parents[1] / "src/aveyb/resources/tasks" / name / "meta.json").read_text())
    assert meta["license"]


def test_local_retrieval_queries_without_qrels(tmp_path):
    folder = tmp_path / "tasks" / "news_retrieval"
    _write_jsonl(folder / "corpus.jsonl", [{"_id": "d1", "text": "doc one"}, {"_id": "d2", "text": "doc two"}])
    for split in ("train", "validation"):
        _write_jsonl(folder / "queries" / f"{split}.jsonl", [{"_id": "q1", "text": "one"}, {"_id": "q2", "text": "two"}])
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(TaskDataError, match="query 'q2' has no relevant document"):
        get_task("news_retrieval", tmp_path).load(LoadContext(data_dir=tmp_path, config=FinetuneConfig()))


@pytest.mark.parametrize("kind", ["niah1", "niah2"])
def test_niah_generator_follows_the_protocol(kind):
    from aveyb.tasks.niah import HAYSTACK_WORDS, generate

    assert 120 <= len(HAYSTACK_WORDS) <= 140
    exs = generate(kind, 200, 200, seed=11)
    assert exs == generate(kind, 200, 200, seed=11)  # deterministic
    n_distractor = 0
    for ex in exs:
        words = ex["context"].split()
        assert len(words) == 200
        needles = [i for i, w in enumerate(words) if w not in HAYSTACK_WORDS]
        assert len(needles) in (1, 2)
        n_distractor += len(needles) == 2
        if len(needles) == 2:
            assert needles[1] - needles[0] >= 10  # 5% of 200 words
        (text,), (start,) = ex["answers"]["text"], ex["answers"]["answer_start"]
        assert ex["context"][start:start + len(text)] == text
        if kind == "niah1":
            assert 8 <= len(text) <= 12 and text.isalnum()
        else:
            assert len(text) == 7 and text.isdigit()
        ordinal = ex["question"].split()[3]
        assert text == words[needles[["first", "second"].index(ordinal)]]
    assert 0.65 < n_distractor / len(exs) < 0.95  # train mix: P(1 distractor) = 0.8
    test = generate(kind, 200, 300, seed=11, test=True)
    share = sum(len([w for w in ex["context"].split() if w not in HAYSTACK_WORDS]) == 2 for ex in test) / 300
    assert 0.5 < share < 0.7  # test mix: 0.6


def test_niah_task_length_is_a_parameter():
    splits = load("niah1", niah_length=50, niah_train_size=40, niah_test_size=10)
    assert len(splits.train) == 38 and len(splits.validation) == 2 and len(splits.test) == 10
    assert all(len(ex["context"].split()) == 50 for ex in splits.test)


def test_config_validation_and_presets():
    cfg = FinetuneConfig()
    assert cfg.betas == (0.9, 0.95) and cfg.adam_eps == 1e-5 and cfg.weight_decay == 0.1 and cfg.warmup_ratio == 0.1
    assert cfg.resolved("question_answering").epochs == 4.0
    assert cfg.resolved("retrieval").max_steps == 1000 and cfg.resolved("retrieval").batch_size == 16
    assert cfg.resolved("sequence_classification").batch_size == 32
    for bad in ({"lr": -1}, {"qa_head": "x"}, {"betas": [0.9, 1.5]}, {"batch_size": 0}, {"max_steps": 2.5}):
        with pytest.raises(ValueError, match="FinetuneConfig"):
            FinetuneConfig(**bad)
    with pytest.raises(ValueError, match="unknown fine-tuning option"):
        build_config(None, {"learning_rate": 1})
    assert {"paper", "quick", "ci", "cpu-tiny", "quickstart"} <= set(list_presets())
    assert build_config("ci", parse_set_items(["qa_head=in_span", "lr=1e-4"])).lr == 1e-4


def test_hub_unavailable_is_a_clear_error(monkeypatch):
    import datasets

    from aveyb.tasks.hub import HubUnavailableError, hub_load_split

    def offline(*a, **k):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(HubUnavailableError, match=r"could not load 'nyu-mll/glue' \(config 'sst2'.*--data-dir"):
        hub_load_split("nyu-mll/glue", "sst2", "train")


def test_beir_corpus_cut_keeps_judged_documents():
    from aveyb.tasks.hub import beir_data

    corpus = [{"_id": str(i), "title": "", "text": f"doc {i}"} for i in range(50)]
    data = beir_data(corpus, [{"_id": "q", "text": "query"}], [{"query-id": "q", "corpus-id": "42", "score": 1}],
                     "test", max_corpus_size=5, seed=0)
    assert "42" in data.corpus and len(data.corpus) == 6
    assert len(beir_data(corpus, [{"_id": "q", "text": "x"}], [{"query-id": "q", "corpus-id": "1", "score": 1}],
                         "test").corpus) == 50


# ---- task families ------------------------------------------------------------------------------
def test_every_family_owns_its_run_and_predict_functions_and_a_valid_main_metric():
    import importlib

    from aveyb.tasks.families import FAMILIES

    for family in FAMILIES.values():
        module = importlib.import_module(family.module)
        assert callable(module.run) and callable(module.predict_rows), family.name
        assert family.main_metric in family.metrics
        assert set(family.defaults) <= {"epochs", "max_steps", "batch_size"} and family.defaults["batch_size"] > 0
    assert FinetuneConfig().resolved("retrieval").max_steps == FAMILIES["retrieval"].defaults["max_steps"]
    assert FinetuneConfig().resolved("question_answering").epochs == FAMILIES["question_answering"].defaults["epochs"]


def test_family_aliases_resolve_and_an_unknown_family_names_the_allowed_ones():
    from aveyb.tasks.families import get_family

    assert get_family("NER").name == "token_classification"
    assert get_family("extractive-qa").name == "question_answering"
    assert get_family("retrieval").name == "retrieval"
    with pytest.raises(ValueError, match="unknown task family 'regression'.*sequence_classification"):
        get_family("regression")
    with pytest.raises(ValueError, match="task_type='regression'"):
        FinetuneConfig(task_type="regression")


def test_family_labels_of_reads_the_class_or_the_tags():
    from aveyb.tasks.families import FAMILIES

    assert FAMILIES["sequence_classification"].labels_of({"label": "pos"}) == ["pos"]
    assert FAMILIES["token_classification"].labels_of({"tags": ["B-X", "O"]}) == ["B-X", "O"]
    assert FAMILIES["question_answering"].labels_of({"answers": {"text": ["a"]}}) == []
