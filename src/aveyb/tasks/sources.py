"""Tasks from the user's own data: a folder, a single file or a Hugging Face dataset id.

* A folder of ``train`` / ``validation`` / ``test`` files (``.jsonl``, ``.json``, ``.csv``, ``.tsv``,
  ``.parquet``, each optionally ``.gz``) with an optional ``meta.json`` (``task_type``, ``labels``,
  ``metric``: the data kit's layout). Folders inside the data directory are found by name.
* A BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl`` or ``queries/<split>.jsonl``, and
  ``qrels/<split>.tsv``; with only a test split the model is evaluated zero-shot.
* A single file: its rows are the train split.
* A Hugging Face dataset id, with ``dataset_config`` and a ``splits`` mapping.

Which column is what comes from :class:`~aveyb.tasks.config.FinetuneConfig` (``text_columns``,
``label_column``, ``tokens_column``, ``tags_column``, ``question_column``, ``context_column``,
``answers_column``), else from the usual names. The family is ``task_type`` when given, else
``meta.json``'s, else inferred from the columns when exactly one family fits. Missing validation
/ test splits are carved from train with ``split_seed``; :attr:`TaskSplits.carved` says how.
Every bad row is reported at once, naming the file, the row, the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aveyb.tasks import hub
from aveyb.tasks.data import (
    SPLIT_ALIASES,
    RetrievalData,
    RowErrors,
    TaskDataError,
    find_file,
    find_split_file,
    read_beir_corpus,
    read_beir_queries,
    read_qrels_tsv,
    read_table,
    split_train_validation,
    table_format,
)
from aveyb.tasks.families import ALIASES, FAMILIES
from aveyb.tasks.task import LoadContext, Task, TaskSplits

SC, TC, QA, IR = FAMILIES

# columns looked for when no flag names them (first match wins)
DEFAULT_TEXT_COLUMNS = (("text",), ("text_a", "text_b"), ("sentence1", "sentence2"), ("sentence",),
                        ("premise", "hypothesis"), ("question1", "question2"))
DEFAULT_TAGS_COLUMNS = ("tags", "ner_tags", "pos_tags")
ID_COLUMNS = ("id", "_id", "idx", "guid")
BIO_TAG = re.compile(r"^(O|[BIES]-.+)$")
PACKAGE_TASKS = Path(str(resources.files("aveyb") / "resources" / "tasks"))


@dataclass(frozen=True)
class Columns:
    """Which column holds what; None / () = the usual name."""

    text: tuple[str, ...] = ()
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None
    question: str | None = None
    context: str | None = None
    answers: str | None = None

    @classmethod
    def from_config(cls, cfg) -> Columns:
        if cfg is None:
            return cls()
        return cls(text=tuple(cfg.text_columns or ()), label=cfg.label_column, tokens=cfg.tokens_column,
                   tags=cfg.tags_column, question=cfg.question_column, context=cfg.context_column,
                   answers=cfg.answers_column)

    def named_families(self) -> set[str]:
        """The families whose columns the user named with flags."""
        named = set()
        if self.text or self.label:
            named.add(SC)
        if self.tokens or self.tags:
            named.add(TC)
        if self.question or self.context or self.answers:
            named.add(QA)
        return named


def parse_family(value: Any, where: str) -> str:
    """A family from a task_type such as ``"extractive_qa (span extraction)"``."""
    if isinstance(value, str) and value.strip():
        key = re.split(r"[\s(,;:]", value.strip().lower(), maxsplit=1)[0].replace("-", "_")
        if key in ALIASES:
            return ALIASES[key]
    raise TaskDataError(f"{where}: task_type = {value!r} is not a task family; allowed: "
                        f"{', '.join(FAMILIES)} (or {', '.join(k for k in ALIASES if k not in FAMILIES)})")


def infer_family(columns: set[str], named: Columns, where: str) -> str:
    """The one family that the column flags (else the column names) point to, else an error
    asking for ``--task-type``."""
    found = named.named_families()
    if not found:
        if "label" in columns:
            found.add(SC)
        if {"tokens"} & columns or set(DEFAULT_TAGS_COLUMNS) & columns:
            found.add(TC)
        if {"question", "context", "answers"} & columns:
            found.add(QA)
    if len(found) == 1:
        return found.pop()
    cols = sorted(columns)
    if not found:
        raise TaskDataError(
            f"{where}: cannot tell the task type from the columns {cols}; pass --task-type (one of "
            f"{', '.join(FAMILIES)}) and name the columns (--text-column/--label-column, "
            "--tokens-column/--tags-column, --question-column/--context-column/--answers-column)")
    raise TaskDataError(f"{where}: the columns {cols} fit several task types ({', '.join(sorted(found))}); "
                        "pass --task-type to choose one")


# ---- meta.json -------------------------------------------------------------------------------
def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TaskDataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(meta, dict):
        raise TaskDataError(f"{path}: must be a JSON object with task_type, labels, metric")
    return meta


def meta_labels(meta: dict, where: str) -> list[str] | None:
    labels = meta.get("labels")
    if labels in (None, []):
        return None
    if not isinstance(labels, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                               for x in labels):
        raise TaskDataError(f"{where}: labels = {str(labels)[:80]} must be a list of label names")
    return [str(x) for x in labels]


def main_metric(meta: dict, family: str, where: str) -> str:
    """``meta["main_metric"]``; else token accuracy when ``metric`` says so (POS tagging); else the
    family's paper metric."""
    named = meta.get("main_metric")
    if named is not None:
        if named not in FAMILIES[family].metrics:
            raise TaskDataError(f"{where}: main_metric = {named!r}; allowed for {family}: "
                                f"{list(FAMILIES[family].metrics)}")
        return named
    text = str(meta.get("metric") or "").strip().lower()
    if family == TC and text.startswith("token accuracy"):
        return "token_accuracy"
    return FAMILIES[family].main_metric


def metric_options(meta: dict, family: str, labels: list[str] | None) -> dict[str, Any]:
    """``positive_label`` (SC: ``meta["positive_label"]`` or "F1 of the X class" in ``metric``),
    ``bio`` (TC: ``meta["bio"]`` or every label O / B-x / I-x)."""
    options: dict[str, Any] = {}
    if family == SC:
        positive = meta.get("positive_label")
        match = re.search(r"f1 of (?:the )?(\S+) class", str(meta.get("metric") or ""), re.IGNORECASE)
        if positive is None and match and labels and match.group(1) in labels:
            positive = match.group(1)
        if positive is not None:
            options["positive_label"] = str(positive)
    if family == TC:
        if "bio" in meta:
            options["bio"] = bool(meta["bio"])
        elif labels:
            options["bio"] = all(BIO_TAG.match(t) for t in labels)
    return options


# ---- rows -> internal examples ---------------------------------------------------------------
def row_id(row: dict, n: int) -> Any:
    """The row's own id when it has one, else its 1-based position in the file."""
    for key in ID_COLUMNS:
        if row.get(key) is not None:
            return row[key]
    return n


def label_value(value: Any) -> str | None:
    """A label as text: None / NaN (an empty CSV cell) is missing; 1.0 from a CSV reads as "1"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _need_columns(columns: set[str], wanted: dict[str, str], where: str) -> None:
    missing = [f"{col!r} ({flag})" for col, flag in wanted.items() if col not in columns]
    if missing:
        raise TaskDataError(f"{where}: no column {', '.join(missing)}; the file has {sorted(columns)}; "
                            "name the right one with the flag shown")


def _text_columns(columns: set[str], named: Columns, where: str) -> tuple[str, ...]:
    if named.text:
        if len(named.text) > 2:
            raise TaskDataError(f"{where}: --text-column given {len(named.text)} times; allowed: 1 (single "
                                "texts) or 2 (sentence pairs)")
        return named.text
    for cols in DEFAULT_TEXT_COLUMNS:
        if set(cols) <= columns:
            return cols
    raise TaskDataError(f"{where}: no text column (looked for {[c for cs in DEFAULT_TEXT_COLUMNS for c in cs]}); "
                        f"the file has {sorted(columns)}; name it with --text-column (twice for pairs)")


def _check_text(errors: RowErrors, rid, col: str, value: Any) -> None:
    if value is None:
        errors.add(rid, f"field {col!r} is missing (allowed: a non-empty string)")
    elif not isinstance(value, str):
        errors.add(rid, f"field {col!r} = {str(value)[:40]!r} is a {type(value).__name__} (allowed: a string)")
    elif not value.strip():
        errors.add(rid, f"field {col!r} is empty (allowed: a non-empty string)")


def _check_label(errors: RowErrors, rid, col: str, raw: Any, label: str | None, labels: list[str] | None) -> None:
    allowed = f"one of {labels}" if labels else "a label"
    if label is None:
        errors.add(rid, f"field {col!r} = {raw!r} is missing (allowed: {allowed})")
    elif labels and label not in labels:
        errors.add(rid, f"field {col!r} = {raw!r} is not in the label set {labels}")


def sc_rows(rows: list[dict], named: Columns, where: str, labels: list[str] | None,
            label_names: list[str] | None = None) -> list[dict]:
    """``{"id", "text" | ("text_a", "text_b"), "label"}``; ``label_names`` maps integer labels
    (a Hub ClassLabel) to names."""
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    text_cols = _text_columns(columns, named, where)
    label_col = named.label or "label"
    _need_columns(columns, {**{c: "--text-column" for c in text_cols}, label_col: "--label-column"}, where)
    errors, out = RowErrors(where), []
    for n, row in enumerate(rows, 1):
        rid = row_id(row, n)
        for col in text_cols:
            _check_text(errors, rid, col, row.get(col))
        raw = row.get(label_col)
        if label_names is not None and isinstance(raw, int) and 0 <= raw < len(label_names):
            raw = label_names[raw]
        label = label_value(raw)
        _check_label(errors, rid, label_col, raw, label, labels)
        ex = {"id": str(rid), "label": label}
        if len(text_cols) == 2:
            ex["text_a"], ex["text_b"] = row.get(text_cols[0]), row.get(text_cols[1])
        else:
            ex["text"] = row.get(text_cols[0])
        out.append(ex)
    errors.raise_if_any()
    return out


def tc_rows(rows: list[dict], named: Columns, where: str, labels: list[str] | None,
            label_names: list[str] | None = None) -> list[dict]:
    """``{"id", "tokens": [str], "tags": [str]}``."""
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    tokens_col = named.tokens or "tokens"
    tags_col = named.tags or next((c for c in DEFAULT_TAGS_COLUMNS if c in columns), "tags")
    _need_columns(columns, {tokens_col: "--tokens-column", tags_col: "--tags-column"}, where)
    errors, out = RowErrors(where), []
    for n, row in enumerate(rows, 1):
        rid = row_id(row, n)
        tokens, tags = row.get(tokens_col), row.get(tags_col)
        if isinstance(tokens, str) or isinstance(tags, str):  # a CSV cell holding a JSON list
            tokens, tags = _json_cell(tokens), _json_cell(tags)
        if tokens == []:
            errors.add(rid, f"field {tokens_col!r} is empty (allowed: a non-empty list of words)")
            continue
        if not isinstance(tokens, list):
            errors.add(rid, f"field {tokens_col!r} = {str(tokens)[:40]!r} is not a list (allowed: a non-empty "
                            "list of words)")
            continue
        if not isinstance(tags, list) or len(tags) != len(tokens):
            errors.add(rid, f"field {tags_col!r} has {len(tags) if isinstance(tags, list) else 'no'} tags for "
                            f"{len(tokens)} tokens (allowed: one tag per token)")
            continue
        if label_names is not None:
            tags = [label_names[t] if isinstance(t, int) and 0 <= t < len(label_names) else t for t in tags]
        names = [label_value(t) for t in tags]
        for j, (w, t, raw) in enumerate(zip(tokens, names, tags)):
            if not isinstance(w, str) or not w.strip():
                errors.add(rid, f"field {tokens_col!r}[{j}] = {w!r} is empty (allowed: a non-empty string)")
            elif t is None or (labels and t not in labels):
                errors.add(rid, f"field {tags_col!r}[{j}] = {raw!r} is not in the label set {labels or '(any tag)'}")
        out.append({"id": str(rid), "tokens": list(tokens), "tags": names})
    errors.raise_if_any()
    return out


def _json_cell(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def qa_rows(rows: list[dict], named: Columns, where: str) -> list[dict]:
    """``{"id", "question", "context", "answers": {"text", "answer_start"}}``; an answers cell
    may be JSON text (CSV)."""
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    cols = {"question": named.question or "question", "context": named.context or "context",
            "answers": named.answers or "answers"}
    _need_columns(columns, {cols["question"]: "--question-column", cols["context"]: "--context-column",
                            cols["answers"]: "--answers-column"}, where)
    return [{"id": str(row_id(row, n)), "question": row.get(cols["question"]), "context": row.get(cols["context"]),
             "answers": _json_cell(row.get(cols["answers"]))} for n, row in enumerate(rows, 1)]


def convert_rows(family: str, rows: list[dict], named: Columns, where: str, labels: list[str] | None,
                 label_names: list[str] | None = None) -> list[dict]:
    if not rows:
        raise TaskDataError(f"{where}: no rows")
    if family == SC:
        return sc_rows(rows, named, where, labels, label_names)
    if family == TC:
        return tc_rows(rows, named, where, labels, label_names)
    from aveyb.tasks.qa import check_examples

    examples = qa_rows(rows, named, where)
    check_examples(examples, where, v2=has_unanswerable(examples))
    return examples


def has_unanswerable(examples: list[dict]) -> bool:
    """SQuAD v2 style: some question has an empty answer list."""
    return any(isinstance(ex.get("answers"), dict) and ex["answers"].get("text") == [] for ex in examples)


# ---- carving missing splits --------------------------------------------------------------------
def carve(train: list, fraction: float, seed: int) -> tuple[list, list, str]:
    rest, cut = split_train_validation(train, fraction, seed)
    return rest, cut, f"{fraction * 100:g}% of train, seed {seed}"


def fill_missing_splits(splits: dict[str, list | None], cfg) -> tuple[dict[str, list], dict[str, str]]:
    """Cut a missing test, then a missing validation split from train (fixed seed)."""
    seed = getattr(cfg, "split_seed", 42)
    fractions = {"test": getattr(cfg, "test_fraction", 0.1), "validation": getattr(cfg, "validation_fraction", 0.05)}
    carved = {}
    for name in ("test", "validation"):
        if splits.get(name) is None:
            if len(splits["train"]) < 2:
                raise TaskDataError(f"no {name} split and too few train rows ({len(splits['train'])}) to cut one")
            splits["train"], splits[name], carved[name] = carve(splits["train"], fractions[name], seed)
    return splits, carved


# ---- a folder or a file ------------------------------------------------------------------------
def is_beir_folder(folder: Path) -> bool:
    return find_file(folder, "corpus") is not None and (folder / "qrels").is_dir()


def folder_family(folder: Path, meta: dict, cfg, rows: list[dict] | None) -> str:
    """--task-type, else meta.json's task_type, else a BEIR layout, else the columns."""
    if cfg is not None and cfg.task_type:
        return parse_family(cfg.task_type, "--task-type")
    if meta.get("task_type"):
        return parse_family(meta["task_type"], str(folder / "meta.json"))
    if is_beir_folder(folder):
        return IR
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    return infer_family(columns, Columns.from_config(cfg), str(folder))


def read_split_files(folder: Path) -> dict[str, tuple[Path, list[dict]] | None]:
    found = {}
    for split in SPLIT_ALIASES:
        path = find_split_file(folder, split)
        found[split] = (path, read_table(path)) if path is not None else None
    return found


def folder_task(folder: Path, name: str, source: str = "local", cfg=None) -> Task:
    """A task from a folder of split files (+ meta.json) or a BEIR folder."""
    folder = Path(folder)
    meta = read_meta(folder)
    where = str(folder / "meta.json")
    family_hint = None
    if not (cfg is not None and cfg.task_type) and not meta.get("task_type") and is_beir_folder(folder):
        family_hint = IR
    files = None if family_hint == IR else _peek_train(folder, meta, cfg)
    family = family_hint or folder_family(folder, meta, cfg, files)
    labels = meta_labels(meta, where) if family in (SC, TC) else None

    def load(ctx: LoadContext) -> TaskSplits:
        if family == IR:
            return beir_splits(folder, ctx.config)
        raw = read_split_files(folder)
        if raw["train"] is None:
            raise TaskDataError(f"{folder}: no train file (train.jsonl, .csv, .tsv, .parquet, optionally .gz)")
        named = Columns.from_config(ctx.config)
        splits = {split: None if found is None else convert_rows(family, found[1], named, str(found[0]), labels)
                  for split, found in raw.items()}
        splits, carved = fill_missing_splits(splits, ctx.config)
        _data_options(task, splits["train"] + splits["validation"] + splits["test"])
        return TaskSplits(splits["train"], splits["validation"], splits["test"], carved)

    task = Task(name, family, load, labels, main_metric(meta, family, where), source=source,
                options=metric_options(meta, family, labels),
                description=_describe(meta, source, folder))
    return task


def _peek_train(folder: Path, meta: dict, cfg) -> list[dict] | None:
    """The train rows when the family must be read from the columns (no task_type anywhere)."""
    if (cfg is not None and cfg.task_type) or meta.get("task_type"):
        return None
    path = find_split_file(folder, "train")
    if path is None:
        raise TaskDataError(f"{folder}: no train file (train.jsonl, .csv, .tsv, .parquet, optionally .gz) and no "
                            "BEIR layout (corpus.jsonl + qrels/)")
    return read_table(path)


def _data_options(task: Task, examples: list[dict]) -> None:
    """Options only the rows tell: BIO tagging (TC without a label list), unanswerable questions (QA)."""
    if task.family == TC and "bio" not in task.options:
        tags = {t for ex in examples for t in ex["tags"]}
        task.options["bio"] = bool(tags) and all(BIO_TAG.match(t) for t in tags)
    if task.family == QA and "v2" not in task.options:
        task.options["v2"] = has_unanswerable(examples)


def _describe(meta: dict, source: str, where: Path) -> str:
    kind = {"package": "bundled sample", "local": "local folder", "file": "file"}.get(source, source)
    counts = meta.get("counts")
    size = f", {counts.get('train')} train rows" if isinstance(counts, dict) and counts.get("train") else ""
    return f"{kind} {where}{size}"


def file_task(path: Path, cfg=None) -> Task:
    """A task from one file: its rows are the train split; validation and test are carved from it."""
    path = Path(path)
    rows = read_table(path)
    if not rows:
        raise TaskDataError(f"{path}: no rows")
    named = Columns.from_config(cfg)
    if cfg is not None and cfg.task_type:
        family = parse_family(cfg.task_type, "--task-type")
    else:
        family = infer_family(set().union(*(r.keys() for r in rows)), named, str(path))
    if family == IR:
        raise TaskDataError(f"{path}: retrieval needs a BEIR folder (corpus.jsonl, queries.jsonl, "
                            "qrels/<split>.tsv), not a single file")

    def load(ctx: LoadContext) -> TaskSplits:
        train = convert_rows(family, rows, Columns.from_config(ctx.config), str(path), None)
        splits, carved = fill_missing_splits({"train": train, "validation": None, "test": None}, ctx.config)
        _data_options(task, splits["train"] + splits["validation"] + splits["test"])
        return TaskSplits(splits["train"], splits["validation"], splits["test"], carved)

    stem = path.name
    for _ in range(2):  # data.csv.gz -> data
        if table_format(stem) is not None or stem.endswith(".gz"):
            stem = Path(stem).stem
    task = Task(stem, family, load, None, FAMILIES[family].main_metric, source="file", description=f"file {path}")
    return task


# ---- BEIR folders ------------------------------------------------------------------------------
def beir_splits(folder: Path, cfg) -> TaskSplits:
    """Train pairs and evaluation splits of a BEIR folder. Without train qrels the model is
    evaluated zero-shot; a missing validation split is carved from the train queries."""
    corpus_path = find_file(folder, "corpus")
    if corpus_path is None:
        raise TaskDataError(f"{folder}: no corpus.jsonl or corpus.jsonl.gz")
    corpus = read_beir_corpus(read_table(corpus_path), str(corpus_path))
    shared_queries = find_file(folder, "queries")
    all_queries = read_beir_queries(read_table(shared_queries), str(shared_queries)) if shared_queries else None
    data = {split: _beir_split(folder, split, corpus, all_queries) for split in SPLIT_ALIASES}
    if not any(data.values()):
        raise TaskDataError(f"{folder}: no qrels/<split>.tsv (train, validation/dev or test) with its queries "
                            "(queries.jsonl or queries/<split>.jsonl)")
    carved = {}
    train = data["train"]
    if train is not None and data["validation"] is None and len(train.queries) > 1:
        seed, fraction = getattr(cfg, "split_seed", 42), getattr(cfg, "validation_fraction", 0.05)
        keep, held = split_train_validation(sorted(train.queries), fraction, seed)
        data["validation"] = _subset(train, held)
        data["train"] = train = _subset(train, keep)
        carved["validation"] = f"{fraction * 100:g}% of train queries, seed {seed}"
    pairs = []
    if train is not None:
        pairs = [(train.queries[q], corpus[d]) for q in sorted(train.queries)
                 for d, s in sorted(train.qrels[q].items()) if s > 0]
    return TaskSplits(pairs, data["validation"], data["test"], carved)


def _subset(data: RetrievalData, qids: list[str]) -> RetrievalData:
    return RetrievalData(corpus=data.corpus, queries={q: data.queries[q] for q in qids},
                         qrels={q: data.qrels[q] for q in qids})


def _beir_split(folder: Path, split: str, corpus: dict[str, str], all_queries: dict[str, str] | None):
    for stem in SPLIT_ALIASES[split]:
        qrels_path = folder / "qrels" / f"{stem}.tsv"
        if not qrels_path.is_file():
            continue
        qrels = read_qrels_tsv(qrels_path)
        qpath = find_file(folder / "queries", stem)
        if qpath is not None:
            queries = read_beir_queries(read_table(qpath), str(qpath))
        elif all_queries is not None:
            queries = {q: all_queries[q] for q in qrels if q in all_queries}
            missing = sorted(q for q in qrels if q not in all_queries)
            if missing:
                raise TaskDataError(f"{qrels_path}: {len(missing)} query id(s) not in queries.jsonl, e.g. "
                                    f"{missing[:5]}")
        else:
            raise TaskDataError(f"{qrels_path}: no queries (queries.jsonl or queries/{stem}.jsonl)")
        data = RetrievalData(corpus=corpus, queries=queries, qrels=qrels)
        data.check(f"{folder} ({split})")
        return data
    return None


# ---- Hugging Face dataset ids --------------------------------------------------------------------
class MissingSplit(LookupError):
    """The dataset has no split of that name (carve it from train instead)."""


def _load_hub_split(load_split: Callable, dataset: str, config: str | None, split: str, required: bool):
    try:
        return load_split(dataset, config, split)
    except (FileNotFoundError, hub.MissingSplitError):
        if required:
            raise TaskDataError(f"{dataset}: no split {split!r}; map the splits with "
                                "--split train=NAME,validation=NAME,test=NAME") from None
        raise MissingSplit(split) from None


def hub_task(dataset: str, cfg, load_split: Callable) -> Task:
    """A task from a Hub dataset id; splits named by ``cfg.splits`` (default train/validation/test)."""
    config = getattr(cfg, "dataset_config", None)
    mapping = dict(getattr(cfg, "splits", None) or {})
    unknown = sorted(set(mapping) - set(SPLIT_ALIASES))
    if unknown:
        raise TaskDataError(f"--split: unknown split name(s) {unknown}; allowed: train, validation, test")
    train_ds = _load_hub_split(load_split, dataset, config, mapping.get("train", "train"), required=True)
    named = Columns.from_config(cfg)
    if cfg is not None and cfg.task_type:
        family = parse_family(cfg.task_type, "--task-type")
    else:
        family = infer_family(set(_column_names(train_ds)), named, dataset)
    if family == IR:
        raise TaskDataError(f"{dataset}: retrieval from a Hub id is not supported; save it as a BEIR folder "
                            "(corpus.jsonl, queries.jsonl, qrels/test.tsv) and pass the folder")
    label_col = named.label or "label"
    tags_col = named.tags or next((c for c in DEFAULT_TAGS_COLUMNS if c in _column_names(train_ds)), "tags")
    names = hub._label_names(train_ds, label_col if family == SC else tags_col, None)

    def load(ctx: LoadContext) -> TaskSplits:
        splits = {}
        for split in SPLIT_ALIASES:
            source = mapping.get(split, split)
            try:
                ds = train_ds if split == "train" else _load_hub_split(ctx.load_split, dataset, config, source,
                                                                        required=split in mapping)
            except MissingSplit:
                splits[split] = None
                continue
            rows = [dict(r) for r in ds]
            splits[split] = convert_rows(family, rows, Columns.from_config(ctx.config), f"{dataset}[{source}]",
                                         names, label_names=names)
        splits, carved = fill_missing_splits(splits, ctx.config)
        _data_options(task, splits["train"] + splits["validation"] + splits["test"])
        return TaskSplits(splits["train"], splits["validation"], splits["test"], carved)

    task = Task(dataset, family, load, names, FAMILIES[family].main_metric, source="hub-dataset",
                description=f"Hugging Face dataset {dataset}" + (f" ({config})" if config else ""))
    return task


def _column_names(ds) -> list[str]:
    names = getattr(ds, "column_names", None)
    if names is not None:
        return list(names)
    return sorted(set().union(*(r.keys() for r in ds))) if ds else []


# ---- discovery ---------------------------------------------------------------------------------
def task_folders(root: Path | None) -> dict[str, Path]:
    """Every task folder (one holding a meta.json) in ``root/tasks`` and in ``root`` itself."""
    found: dict[str, Path] = {}
    if root is None:
        return found
    for base in (Path(root) / "tasks", Path(root)):
        if base.is_dir():
            for child in sorted(base.iterdir()):
                if child.is_dir() and (child / "meta.json").is_file():
                    found.setdefault(child.name, child)
    return found


def local_folder(name: str, root: Path | None) -> Path | None:
    """``root/tasks/<name>`` or ``root/<name>`` when it holds task data (meta.json or split files)."""
    if root is None:
        return None
    for folder in (Path(root) / "tasks" / name, Path(root) / name):
        if folder.is_dir() and ((folder / "meta.json").is_file() or find_split_file(folder, "train")
                                or is_beir_folder(folder)):
            return folder
    return None
