"""Task registry: every task by name, with its family, labels, metrics and loader.

* Paper tasks from the Hugging Face Hub: ``mnli`` (matched), ``qqp``, ``sst2``, ``conll2003``,
  ``ontonotes5``, ``uner_en``, ``squad``, ``squad_v2``, ``record``, ``msmarco``, ``nq``, ``mldr``.
  Protocol: the Hub train split is cut 95/5 (seed 42) into train/validation; the public
  validation split is the test set.
* Local tasks: every folder with a ``meta.json`` in the data directory (``--data-dir`` /
  ``AVEYB_DATA_DIR``, ``<dir>/tasks/<name>`` or ``<dir>/<name>``), by folder name, with their
  own train/validation/test files (:mod:`aveyb.tasks.sources`).
* Package samples (``<name>-sample``): every folder of ``aveyb/resources/tasks``, a few hundred
  rows shipped with aveyb for the quickstart.
* Generated: ``niah1``, ``niah2`` (needle in a haystack; length from ``niah_length``).
* Anything else :func:`get_task` is given: a folder, a file or a Hugging Face dataset id.
"""

from __future__ import annotations

from pathlib import Path

from aveyb.tasks import hub
from aveyb.tasks.data import (
    RetrievalData,
    RowErrors,
    TaskDataError,
    resolve_data_dir,
    split_train_validation,
    table_format,
)
from aveyb.tasks.sources import (
    PACKAGE_TASKS,
    file_task,
    folder_task,
    hub_task,
    local_folder,
    read_meta,
    task_folders,
)
from aveyb.tasks.task import FAMILIES, LoadContext, Task, TaskSplits

__all__ = ["FAMILIES", "REGISTRY", "LoadContext", "Task", "TaskSplits", "get_task", "list_tasks", "read_meta",
           "register", "task_labels"]

REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.family not in FAMILIES:
        raise ValueError(f"task {task.name!r}: unknown family {task.family!r}")
    REGISTRY[task.name] = task
    return task


# ---- Hub tasks ------------------------------------------------------------------------------
def _cfg(ctx, name, default):
    return getattr(ctx.config, name, default) if ctx.config is not None else default


def _carved_note(ctx) -> dict[str, str]:
    return {"validation": f"{_cfg(ctx, 'validation_fraction', 0.05) * 100:g}% of train, seed {_cfg(ctx, 'split_seed', 42)}"}


def _hub_split_protocol(ctx: LoadContext, convert, path, name, train_split="train", test_split="validation"):
    train = convert(ctx.load_split(path, name, train_split))
    test = convert(ctx.load_split(path, name, test_split))
    tr, va = split_train_validation(train, _cfg(ctx, "validation_fraction", 0.05), _cfg(ctx, "split_seed", 42))
    return TaskSplits(tr, va, test, _carved_note(ctx))


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
        return TaskSplits(train, val, test, _carved_note(ctx))
    return load


def _mldr(ctx):
    train, val = _msmarco_train(ctx)
    test = hub.mldr_data(ctx.load_split("Shitao/MLDR", "en", "test"), ctx.load_split("Shitao/MLDR", "corpus-en", "corpus"),
                         max_corpus_size=_cfg(ctx, "max_corpus_size", None), seed=_cfg(ctx, "seed", 0))
    return TaskSplits(train, val, test, _carved_note(ctx))


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
        return TaskSplits(tr, va, test, _carved_note(ctx))
    return load


register(Task("niah1", "question_answering", _niah("niah1"), None, "paper_f1", source="generated",
              description="needle in a haystack: n-th special alphanumeric word"))
register(Task("niah2", "question_answering", _niah("niah2"), None, "paper_f1", source="generated",
              description="needle in a haystack: n-th special 7-digit number"))


# ---- package samples and local folders --------------------------------------------------------
SAMPLE_SUFFIX = "-sample"


def _register_package_samples() -> None:
    for name, folder in task_folders(PACKAGE_TASKS).items():
        register(folder_task(folder, name + SAMPLE_SUFFIX, source="package"))


_register_package_samples()


def get_task(name: str, data_dir: str | Path | None = None, config=None, load_split=None) -> Task:
    """The task called ``name``: a built-in one, else a folder or file at that path, else a folder
    of the data directory (``data_dir`` or ``$AVEYB_DATA_DIR``), else a Hub dataset id (``org/name``).
    ``config`` (a FinetuneConfig) names the columns and the task type of own data."""
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir():
            return folder_task(path, path.resolve().name, source="local", cfg=config)
        return file_task(path, config)
    root = resolve_data_dir(data_dir)
    folder = local_folder(name, root)
    if folder is not None:
        return folder_task(folder, name, source="local", cfg=config)
    if table_format(name) is not None or name.startswith((".", "/", "~")):
        raise TaskDataError(f"task {name!r}: no such file or folder")
    if "/" in name:
        return hub_task(name, config, load_split or hub.hub_load_split)
    raise TaskDataError(_unknown_task_message(name, root))


def _unknown_task_message(name: str, root: Path | None) -> str:
    lines = [f"unknown task {name!r}."]
    if root is None:
        lines.append("Local tasks need --data-dir or $AVEYB_DATA_DIR (the folder holding tasks/<name>/).")
    else:
        local = sorted(task_folders(root))
        lines.append(f"Local tasks in {root}: {', '.join(local) or 'none'}.")
    if name + SAMPLE_SUFFIX in REGISTRY:
        lines.append(f"A bundled sample of it is {name + SAMPLE_SUFFIX!r}.")
    lines.append(f"Built-in tasks: {', '.join(sorted(REGISTRY))}.")
    lines.append("Or give a folder (train/validation/test files + meta.json), a file (.jsonl, .csv, .tsv, "
                 ".parquet) or a Hugging Face dataset id (org/name).")
    return " ".join(lines)


def task_labels(task: Task, splits: TaskSplits, data_dir: Path | None = None) -> list[str] | None:
    """The label set: the task's fixed list (built-in, or meta.json's ``labels``), else the sorted
    train labels. A train row without a label is an error naming the row."""
    family = FAMILIES[task.family]
    key = family.label_key
    if key is None:
        return None
    if task.labels:
        return list(task.labels)
    errors, seen = RowErrors(f"{task.name}/train"), set()
    for n, ex in enumerate(splits.train, 1):
        values = family.labels_of(ex)
        if ex.get(key) is None or any(v is None for v in values):
            errors.add(ex.get("id", n), f"field {key!r} is missing (allowed: a label for every "
                                        f"{'row' if key == 'label' else 'token'})")
        else:
            seen.update(values)
    errors.raise_if_any()
    return sorted(seen, key=str)


def list_tasks(data_dir: str | Path | None = None) -> list[str]:
    """Built-in tasks and the task folders of the data directory."""
    return sorted(set(REGISTRY) | set(task_folders(resolve_data_dir(data_dir))))
