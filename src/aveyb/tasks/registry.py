"""Task registry: every task by name, with its family, labels, metrics and loader.

* Paper tasks from the Hugging Face Hub: ``mnli`` (matched), ``qqp``, ``sst2``, ``conll2003``,
  ``ontonotes5``, ``uner_en``, ``squad``, ``squad_v2``, ``record``, ``msmarco``, ``nq``, ``mldr``.
  Protocol: the Hub train split is cut 95/5 (seed 42) into train/validation; the public
  validation split is the test set.
* Local tasks (``--data-dir`` / ``AVEYB_DATA_DIR``, folder ``tasks/<name>``), by folder name:
  their own train/validation/test files.
* Package samples (``<name>-sample``): a few hundred rows shipped with aveyb for the quickstart.
* Generated: ``niah1``, ``niah2`` (needle in a haystack; length from ``niah_length``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aveyb.tasks import hub
from aveyb.tasks.data import (
    RetrievalData,
    TaskDataError,
    find_file,
    read_beir_corpus,
    read_beir_queries,
    read_jsonl,
    read_qrels_tsv,
    split_train_validation,
    subsample,
)

FAMILIES = ("sequence_classification", "token_classification", "question_answering", "retrieval")


@dataclass
class TaskSplits:
    train: Any            # list of examples; for retrieval a list of (query, positive) pairs
    validation: Any       # list of examples; for retrieval a RetrievalData
    test: Any | None      # same as validation (None: no test split)


@dataclass
class Task:
    name: str
    family: str
    loader: Callable[[LoadContext], TaskSplits]
    labels: list[str] | None = None
    main_metric: str = "accuracy"        # chosen on validation by sweeps; also the table's cell
    source: str = "hub"                   # hub | local | package | generated
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # metric options (positive_label, bio, v2)

    def load(self, ctx: LoadContext) -> TaskSplits:
        splits = self.loader(ctx)
        if self.family != "retrieval":
            cap_train = ctx.config.max_train_examples if ctx.config else None
            cap_eval = ctx.config.max_eval_examples if ctx.config else None
            seed = ctx.config.split_seed if ctx.config else 0
            splits.train = subsample(splits.train, cap_train, seed)
            splits.validation = subsample(splits.validation, cap_eval, seed)
            if splits.test is not None:
                splits.test = subsample(splits.test, cap_eval, seed)
        else:
            cap_train = ctx.config.max_train_examples if ctx.config else None
            splits.train = subsample(splits.train, cap_train, ctx.config.split_seed if ctx.config else 0)
            if ctx.config and ctx.config.max_eval_examples:
                splits.validation = _cap_queries(splits.validation, ctx.config.max_eval_examples)
                if splits.test is not None:
                    splits.test = _cap_queries(splits.test, ctx.config.max_eval_examples)
        return splits


@dataclass
class LoadContext:
    data_dir: Path | None = None
    config: Any = None  # FinetuneConfig
    load_split: hub.LoadSplit = hub.hub_load_split


def _cap_queries(data: RetrievalData, n: int) -> RetrievalData:
    keep = sorted(data.queries)[:n] if len(data.queries) > n else sorted(data.queries)
    return RetrievalData(corpus=data.corpus, queries={q: data.queries[q] for q in keep},
                         qrels={q: data.qrels[q] for q in keep}, train_pairs=data.train_pairs)


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.family not in FAMILIES:
        raise ValueError(f"task {task.name!r}: unknown family {task.family!r}")
    REGISTRY[task.name] = task
    return task


# ---- Hub tasks ------------------------------------------------------------------------------
def _cfg(ctx, name, default):
    return getattr(ctx.config, name, default) if ctx.config is not None else default


def _hub_split_protocol(ctx: LoadContext, convert, path, name, train_split="train", test_split="validation"):
    train = convert(ctx.load_split(path, name, train_split))
    test = convert(ctx.load_split(path, name, test_split))
    tr, va = split_train_validation(train, _cfg(ctx, "validation_fraction", 0.05), _cfg(ctx, "split_seed", 42))
    return TaskSplits(tr, va, test)


def _glue(config, test_split="validation"):
    return lambda ctx: _hub_split_protocol(ctx, lambda ds: hub.glue_rows(ds, config), "nyu-mll/glue", config,
                                           test_split=test_split)


register(Task("mnli", "sequence_classification", _glue("mnli", "validation_matched"), hub.MNLI_LABELS,
              "accuracy", description="GLUE MNLI, matched validation as test"))
register(Task("qqp", "sequence_classification", _glue("qqp"), hub.QQP_LABELS, "accuracy",
              options={"positive_label": "duplicate"}, description="GLUE QQP"))
register(Task("sst2", "sequence_classification", _glue("sst2"), hub.SST2_LABELS, "accuracy",
              description="GLUE SST-2"))


def _tagged(path, name, tag_column, labels, test_split="validation"):
    return lambda ctx: _hub_split_protocol(
        ctx, lambda ds: hub.tagged_rows(ds, f"{path}/{name or ''}", tag_column, labels), path, name,
        test_split=test_split)


register(Task("conll2003", "token_classification", _tagged("eriktks/conll2003", None, "ner_tags",
              hub.CONLL2003_LABELS), hub.CONLL2003_LABELS, "paper_macro_f1", options={"bio": True},
              description="CoNLL-2003 English NER"))
register(Task("ontonotes5", "token_classification", _tagged("tner/ontonotes5", None, "tags",
              hub.ONTONOTES5_LABELS), hub.ONTONOTES5_LABELS, "paper_macro_f1", options={"bio": True},
              description="OntoNotes 5 NER (tner)"))
register(Task("uner_en", "token_classification", _tagged("universalner/universal_ner", "en_ewt", "ner_tags",
              hub.UNER_LABELS), hub.UNER_LABELS, "paper_macro_f1", options={"bio": True},
              description="Universal NER, English EWT"))


def _squad(path):
    return lambda ctx: _hub_split_protocol(ctx, lambda ds: hub.squad_rows(ds, path), path, None)


register(Task("squad", "question_answering", _squad("rajpurkar/squad"), None, "paper_f1",
              description="SQuAD v1.1"))
register(Task("squad_v2", "question_answering", _squad("rajpurkar/squad_v2"), None, "paper_f1",
              options={"v2": True}, description="SQuAD v2.0 (unanswerable questions)"))
register(Task("record", "question_answering",
              lambda ctx: _hub_split_protocol(ctx, hub.record_rows, "aps/super_glue", "record"), None, "paper_f1",
              description="SuperGLUE ReCoRD (cloze; answers located in the passage)"))

MSMARCO_PAIRS = ("sentence-transformers/msmarco-bm25", "triplet", "train")


def _msmarco_train(ctx) -> tuple[list, RetrievalData]:
    pairs = hub.msmarco_pairs(ctx.load_split(*MSMARCO_PAIRS))
    tr, va = split_train_validation(pairs, _cfg(ctx, "validation_fraction", 0.05), _cfg(ctx, "split_seed", 42))
    return tr, pairs_to_retrieval(va)


def pairs_to_retrieval(pairs: list[tuple[str, str]], prefix: str = "val") -> RetrievalData:
    """Held-out training pairs as a small retrieval set: each query's positive is its document."""
    corpus, queries, qrels, seen = {}, {}, {}, {}
    for i, (q, d) in enumerate(pairs):
        did = seen.setdefault(d, f"{prefix}-d{len(seen)}")
        corpus[did] = d
        queries[f"{prefix}-q{i}"] = q
        qrels[f"{prefix}-q{i}"] = {did: 1}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


def _beir(dataset, qrels_split):
    def load(ctx):
        train, val = _msmarco_train(ctx)
        test = hub.beir_data(ctx.load_split(f"BeIR/{dataset}", "corpus", "corpus"),
                             ctx.load_split(f"BeIR/{dataset}", "queries", "queries"),
                             ctx.load_split(f"BeIR/{dataset}-qrels", None, qrels_split),
                             f"BeIR/{dataset}", _cfg(ctx, "max_corpus_size", None), _cfg(ctx, "seed", 0))
        return TaskSplits(train, val, test)
    return load


def _mldr(ctx):
    train, val = _msmarco_train(ctx)
    test = hub.mldr_data(ctx.load_split("Shitao/MLDR", "en", "test"), ctx.load_split("Shitao/MLDR", "corpus-en", "corpus"),
                         max_corpus_size=_cfg(ctx, "max_corpus_size", None), seed=_cfg(ctx, "seed", 0))
    return TaskSplits(train, val, test)


register(Task("msmarco", "retrieval", _beir("msmarco", "validation"), None, "ndcg@10",
              description="train on MS MARCO pairs; test MS MARCO dev (BEIR)"))
register(Task("nq", "retrieval", _beir("nq", "test"), None, "ndcg@10",
              description="train on MS MARCO pairs; test NQ (BEIR)"))
register(Task("mldr", "retrieval", _mldr, None, "ndcg@10", description="train on MS MARCO pairs; test MLDR en"))


# ---- generated: needle in a haystack ---------------------------------------------------------
def _niah(kind):
    def load(ctx):
        from aveyb.tasks.niah import generate

        length, seed = _cfg(ctx, "niah_length", 1000), _cfg(ctx, "niah_seed", 11)
        train = generate(kind, length, _cfg(ctx, "niah_train_size", 10000), seed)
        test = generate(kind, length, _cfg(ctx, "niah_test_size", 1000), seed, test=True)
        tr, va = split_train_validation(train, _cfg(ctx, "validation_fraction", 0.05), _cfg(ctx, "split_seed", 42))
        return TaskSplits(tr, va, test)
    return load


register(Task("niah1", "question_answering", _niah("niah1"), None, "paper_f1", source="generated",
              description="needle in a haystack: n-th special alphanumeric word"))
register(Task("niah2", "question_answering", _niah("niah2"), None, "paper_f1", source="generated",
              description="needle in a haystack: n-th special 7-digit number"))


# ---- local tasks (shared data layout) -------------------------------------------------------
LOCAL_TASKS = {
    # name: (family, main metric, metric options)
    "pos_brown": ("token_classification", "token_accuracy", {"bio": False}),
    "ner_wnut": ("token_classification", "paper_macro_f1", {"bio": True}),
    "sentiment_rt": ("sequence_classification", "accuracy", {}),
    "trec_qc": ("sequence_classification", "accuracy", {}),
    "sms_spam": ("sequence_classification", "accuracy", {"positive_label": "spam"}),
    "paraphrase_bible": ("sequence_classification", "accuracy", {"positive_label": "paraphrase"}),
    "news_retrieval": ("retrieval", "ndcg@10", {}),
    "news_cloze": ("question_answering", "paper_f1", {}),
}

SAMPLE_SUFFIX = "-sample"
SAMPLED_TASKS = ("sentiment_rt", "trec_qc", "sms_spam", "ner_wnut", "paraphrase_bible", "news_retrieval")


def local_task_dir(name: str, data_dir: Path | None) -> Path:
    if name.endswith(SAMPLE_SUFFIX):
        folder = resources.files("aveyb") / "resources" / "tasks" / name[: -len(SAMPLE_SUFFIX)]
        return Path(str(folder))
    if data_dir is None:
        raise TaskDataError(
            f"task {name!r} is a local task: give --data-dir or set AVEYB_DATA_DIR to the folder holding "
            f"tasks/{name}/ (or use the bundled sample {name + SAMPLE_SUFFIX!r})"
        )
    for folder in (data_dir / "tasks" / name, data_dir / name):
        if folder.is_dir():
            return folder
    raise TaskDataError(f"task {name!r}: no folder {data_dir / 'tasks' / name}")


def read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _local_rows(folder: Path, split: str, required: bool = True) -> list[dict] | None:
    path = find_file(folder, split)
    if path is None:
        if required:
            raise TaskDataError(f"{folder}: no {split}.jsonl or {split}.jsonl.gz")
        return None
    return read_jsonl(path)


def _local_loader(name: str):
    family = LOCAL_TASKS[name.removesuffix(SAMPLE_SUFFIX)][0]

    def load(ctx: LoadContext) -> TaskSplits:
        folder = local_task_dir(name, ctx.data_dir)
        if family == "retrieval":
            return _local_retrieval(folder)
        train = _local_rows(folder, "train")
        val = _local_rows(folder, "validation", required=False)
        test = _local_rows(folder, "test", required=False)
        if val is None:
            train, val = split_train_validation(train, _cfg(ctx, "validation_fraction", 0.05), _cfg(ctx, "split_seed", 42))
        return TaskSplits(train, val, test)
    return load


def _local_retrieval(folder: Path) -> TaskSplits:
    corpus_path = find_file(folder, "corpus")
    if corpus_path is None:
        raise TaskDataError(f"{folder}: no corpus.jsonl(.gz)")
    corpus = read_beir_corpus(read_jsonl(corpus_path), str(corpus_path))

    def split(name):
        qpath = find_file(folder / "queries", name)
        rpath = folder / "qrels" / f"{name}.tsv"
        if qpath is None or not rpath.is_file():
            return None
        queries = read_beir_queries(read_jsonl(qpath), str(qpath))
        qrels = read_qrels_tsv(rpath)
        return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)

    train = split("train")
    if train is None:
        raise TaskDataError(f"{folder}: retrieval needs queries/train.jsonl and qrels/train.tsv")
    train.check(f"{folder} (train)")
    pairs = [(train.queries[q], corpus[d]) for q in sorted(train.queries)
             for d, s in sorted(train.qrels[q].items()) if s > 0]
    val, test = split("validation"), split("test")
    for data, nm in ((val, "validation"), (test, "test")):
        if data is not None:
            data.check(f"{folder} ({nm})")
    if val is None:
        raise TaskDataError(f"{folder}: retrieval needs queries/validation.jsonl and qrels/validation.tsv")
    return TaskSplits(pairs, val, test)


for _name, (_family, _metric, _opts) in LOCAL_TASKS.items():
    _variants = [(_name, "local")] + ([(_name + SAMPLE_SUFFIX, "package")] if _name in SAMPLED_TASKS else [])
    for _full, _source in _variants:
        register(Task(_full, _family, _local_loader(_full), None, _metric, source=_source, options=dict(_opts),
                      description=f"{'bundled sample of ' if _source == 'package' else 'local task '}{_name}"))


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def task_labels(task: Task, splits: TaskSplits, data_dir: Path | None) -> list[str] | None:
    """The label set: the task's fixed list, else meta.json's ``labels``, else the sorted train labels."""
    if task.family not in ("sequence_classification", "token_classification"):
        return None
    if task.labels:
        return list(task.labels)
    if task.source in ("local", "package"):
        meta = read_meta(local_task_dir(task.name, data_dir))
        if meta.get("labels"):
            return list(meta["labels"])
    key = "label" if task.family == "sequence_classification" else "tags"
    seen = set()
    for ex in splits.train:
        v = ex.get(key)
        seen.update(v if isinstance(v, list) else [v])
    return sorted(seen)


def list_tasks() -> list[str]:
    return sorted(REGISTRY)
