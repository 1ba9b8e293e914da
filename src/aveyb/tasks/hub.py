"""Converters from the paper's Hugging Face Hub datasets (exact Hub formats) to internal examples.

``datasets`` is imported lazily, only when a Hub task is loaded. Every loader takes a
``load_split(path, name, split)`` callable so tests can feed fixtures in the Hub's format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from aveyb.tasks.data import RetrievalData, TaskDataError, beir_doc_text

LoadSplit = Callable[[str, "str | None", str], Any]  # returns a datasets.Dataset or a list of dict rows

CONLL2003_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# tner/ontonotes5 dataset/label.json (label -> id order)
ONTONOTES5_LABELS = [
    "O", "B-CARDINAL", "B-DATE", "I-DATE", "B-PERSON", "I-PERSON", "B-NORP", "B-GPE", "I-GPE", "B-LAW",
    "I-LAW", "B-ORG", "I-ORG", "B-PERCENT", "I-PERCENT", "B-ORDINAL", "B-MONEY", "I-MONEY", "B-WORK_OF_ART",
    "I-WORK_OF_ART", "B-FAC", "B-TIME", "I-CARDINAL", "B-LOC", "B-QUANTITY", "I-QUANTITY", "I-NORP", "I-LOC",
    "B-PRODUCT", "I-TIME", "B-EVENT", "I-EVENT", "I-FAC", "B-LANGUAGE", "I-PRODUCT", "I-ORDINAL", "I-LANGUAGE",
]
UNER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
MNLI_LABELS = ["entailment", "neutral", "contradiction"]
QQP_LABELS = ["not_duplicate", "duplicate"]
SST2_LABELS = ["negative", "positive"]


class HubUnavailableError(RuntimeError):
    """A Hub dataset could not be loaded (offline, missing, or no ``datasets`` package)."""


class MissingSplitError(HubUnavailableError):
    """The dataset loaded but has no split of the requested name."""


def hub_load_split(path: str, name: str | None, split: str):
    """``datasets.load_dataset(path, name, split=split)`` with a clear error when offline."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover
        raise HubUnavailableError("Hub tasks need the 'datasets' package: pip install 'aveyb[data]'") from err
    try:
        return datasets.load_dataset(path, name, split=split)
    except ValueError as err:
        if "Unknown split" in str(err):
            raise MissingSplitError(f"{path!r} (config {name!r}) has no split {split!r}: {err}") from err
        raise HubUnavailableError(
            f"could not load {path!r} (config {name!r}, split {split!r}) from the Hugging Face Hub: {err}. "
            "Without internet use a local task (--data-dir / AVEYB_DATA_DIR) or pre-download the dataset."
        ) from err
    except Exception as err:
        raise HubUnavailableError(
            f"could not load {path!r} (config {name!r}, split {split!r}) from the Hugging Face Hub: {err}. "
            "Without internet use a local task (--data-dir / AVEYB_DATA_DIR) or pre-download the dataset."
        ) from err


def _label_names(ds, column: str, fallback: list[str]) -> list[str]:
    """Names of a ClassLabel column (or of a Sequence(ClassLabel)), else ``fallback``."""
    features = getattr(ds, "features", None)
    if features is None or column not in features:
        return fallback
    feat = features[column]
    feat = getattr(feat, "feature", feat)  # Sequence(ClassLabel) / List(ClassLabel)
    if isinstance(feat, list) and feat:  # datasets>=4 may give a plain list for List(...)
        feat = feat[0]
    names = getattr(feat, "names", None)
    return list(names) if names else fallback


def _rows(ds) -> Iterable[dict]:
    return ds if not hasattr(ds, "to_list") else ds.to_list()


def _int_label(value, names: list[str], where: str, rid) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TaskDataError(f"{where}: row {rid!r} field 'label' should be an int, got {value!r}")
    if value < 0:  # GLUE test splits carry -1
        raise TaskDataError(f"{where}: row {rid!r} has label {value} (unlabelled split?)")
    if value >= len(names):
        raise TaskDataError(f"{where}: row {rid!r} label {value} is outside the label set {names}")
    return names[value]


# ---- sequence classification (nyu-mll/glue) --------------------------------------------
def glue_rows(ds, config: str) -> list[dict]:
    where = f"nyu-mll/glue/{config}"
    fields = {"mnli": ("premise", "hypothesis", MNLI_LABELS), "qqp": ("question1", "question2", QQP_LABELS),
              "sst2": ("sentence", None, SST2_LABELS)}[config]
    a, b, fallback = fields
    names = _label_names(ds, "label", fallback)
    out = []
    for i, row in enumerate(_rows(ds)):
        rid = row.get("idx", i)
        for key in (a, b):
            if key is not None and key not in row:
                raise TaskDataError(f"{where}: row {rid!r} has no field {key!r}")
        ex = {"id": str(rid), "label": _int_label(row.get("label"), names, where, rid)}
        if b is None:
            ex["text"] = row[a]
        else:
            ex["text_a"], ex["text_b"] = row[a], row[b]
        out.append(ex)
    return out


# ---- token classification ----------------------------------------------------------------
def tagged_rows(ds, where: str, tag_column: str, fallback: list[str]) -> list[dict]:
    names = _label_names(ds, tag_column, fallback)
    out = []
    for i, row in enumerate(_rows(ds)):
        rid = row.get("id", row.get("idx", i))
        if "tokens" not in row or tag_column not in row:
            raise TaskDataError(f"{where}: row {rid!r} needs fields 'tokens' and {tag_column!r}")
        tags = []
        for t in row[tag_column]:
            if not isinstance(t, int) or not 0 <= t < len(names):
                raise TaskDataError(f"{where}: row {rid!r} field {tag_column!r} has tag {t!r} outside {names}")
            tags.append(names[t])
        out.append({"id": str(rid), "tokens": list(row["tokens"]), "tags": tags})
    return out


# ---- question answering ---------------------------------------------------------------------
def squad_rows(ds, where: str) -> list[dict]:
    out = []
    for i, row in enumerate(_rows(ds)):
        rid = row.get("id", i)
        for key in ("context", "question", "answers"):
            if key not in row:
                raise TaskDataError(f"{where}: row {rid!r} has no field {key!r}")
        ans = row["answers"]
        out.append({"id": str(rid), "context": row["context"], "question": row["question"],
                    "answers": {"text": list(ans["text"]), "answer_start": [int(s) for s in ans["answer_start"]]}})
    return out


def record_rows(ds, where: str = "super_glue/record") -> list[dict]:
    """ReCoRD (super_glue ``record``): passage + cloze query; answers located via entity spans."""
    out = []
    for i, row in enumerate(_rows(ds)):
        idx = row.get("idx", {})
        rid = f"{idx.get('passage', i)}-{idx.get('query', 0)}" if isinstance(idx, dict) else str(idx)
        for key in ("passage", "query", "answers"):
            if key not in row:
                raise TaskDataError(f"{where}: row {rid!r} has no field {key!r}")
        passage = row["passage"]
        spans = row.get("entity_spans") or {"text": [], "start": [], "end": []}
        texts, starts = [], []
        for answer in row["answers"]:
            found = [s for t, s in zip(spans["text"], spans["start"]) if t == answer]
            if not found:
                found = [m.start() for m in re.finditer(re.escape(answer), passage)]
            if not found:
                raise TaskDataError(f"{where}: row {rid!r} answer {answer!r} not found in field 'passage'")
            for s in found:
                texts.append(answer)
                starts.append(int(s))
        out.append({"id": rid, "context": passage, "question": row["query"],
                    "answers": {"text": texts, "answer_start": starts}})
    return out


# ---- retrieval (BEIR) -------------------------------------------------------------------------
def beir_data(corpus_rows, query_rows, qrel_rows, where: str, max_corpus_size: int | None = None,
              seed: int = 0) -> RetrievalData:
    """BEIR corpus (``_id``, ``title``, ``text``), queries (``_id``, ``text``), qrels
    (``query-id``, ``corpus-id``, ``score``). Queries without judgements are dropped (BEIR does
    the same); the corpus can be cut to the judged documents plus ``max_corpus_size`` others."""
    qrels: dict[str, dict[str, int]] = {}
    for row in _rows(qrel_rows):
        try:
            qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
        except KeyError as err:
            raise TaskDataError(f"{where}: qrels row {row!r} has no field {err.args[0]!r}") from None
    queries = {}
    for row in _rows(query_rows):
        qid = str(row["_id"])
        if qid in qrels:
            queries[qid] = row["text"]
    qrels = {q: d for q, d in qrels.items() if q in queries}
    judged = {d for docs in qrels.values() for d in docs}
    corpus = {}
    others = []
    for row in _rows(corpus_rows):
        did = str(row["_id"])
        if did in judged or max_corpus_size is None:
            corpus[did] = beir_doc_text(row)
        else:
            others.append(row)
    if max_corpus_size is not None and others:
        import random

        random.Random(seed).shuffle(others)
        for row in others[:max_corpus_size]:
            corpus[str(row["_id"])] = beir_doc_text(row)
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


def mldr_data(query_rows, corpus_rows, where: str = "Shitao/MLDR/en", max_corpus_size=None, seed=0) -> RetrievalData:
    """MLDR (``Shitao/MLDR``): queries with ``positive_passages`` [{docid, text}], corpus ``corpus-en``
    rows (``docid``, ``text``); converted to BEIR form."""
    queries, qrels, judged = {}, {}, {}
    for row in _rows(query_rows):
        qid = str(row["query_id"])
        queries[qid] = row["query"]
        positives = row.get("positive_passages") or []
        if not positives:
            raise TaskDataError(f"{where}: query {qid!r} has no positive_passages")
        qrels[qid] = {str(p["docid"]): 1 for p in positives}
        for p in positives:
            judged[str(p["docid"])] = p["text"]
    corpus_iter = ({"_id": r["docid"], "text": r["text"]} for r in _rows(corpus_rows)) if corpus_rows is not None else []
    data = beir_data(corpus_iter, [{"_id": q, "text": t} for q, t in queries.items()],
                     [{"query-id": q, "corpus-id": d, "score": s} for q, docs in qrels.items() for d, s in docs.items()],
                     where, max_corpus_size, seed)
    for did, text in judged.items():
        data.corpus.setdefault(did, text)
    return data


def msmarco_pairs(ds, where: str = "msmarco training pairs") -> list[tuple[str, str]]:
    """MS MARCO training pairs/triplets (sentence-transformers layout: ``query``, ``positive``[, ``negative``])."""
    out = []
    for i, row in enumerate(_rows(ds)):
        if "query" not in row or "positive" not in row:
            raise TaskDataError(f"{where}: row {i} needs fields 'query' and 'positive'")
        out.append((row["query"], row["positive"]))
    return out
