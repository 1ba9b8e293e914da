"""Reading task data: JSON Lines, CSV, TSV and Parquet files (through ``datasets``), BEIR
folders, the data directory, splits, and errors that list every bad row.

Internal example formats (every task family converts its source rows into these):

* sequence classification: ``{"id", "text", "label"}`` or ``{"id", "text_a", "text_b", "label"}``
* token classification: ``{"id", "tokens": [str], "tags": [str]}``
* question answering: ``{"id", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``
  (empty lists: unanswerable)
* retrieval: :class:`RetrievalData` (corpus, queries, qrels, training pairs)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "AVEYB_DATA_DIR"


class TaskDataError(ValueError):
    """Bad task data: the message names the file or task, the row and the field."""


MAX_REPORTED_ROWS = 20


class RowErrors:
    """Every problem found in one file or split, raised together as one :class:`TaskDataError`
    (the first ``MAX_REPORTED_ROWS``, then a count), so one run shows the user all they must fix."""

    def __init__(self, where: str, limit: int = MAX_REPORTED_ROWS):
        self.where, self.limit = where, limit
        self.problems: list[str] = []

    def add(self, row_id: Any, problem: str) -> None:
        """``problem`` reads after the row: "field 'label' = None is missing (allowed: ...)"."""
        self.problems.append(f"row {row_id!r} {problem}" if row_id is not None else problem)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def message(self) -> str:
        if len(self.problems) == 1:
            return f"{self.where}: {self.problems[0]}"
        shown = self.problems[: self.limit]
        lines = [f"{self.where}: {len(self.problems)} bad rows:"] + [f"  {p}" for p in shown]
        if len(self.problems) > self.limit:
            lines.append(f"  ... and {len(self.problems) - self.limit} more")
        return "\n".join(lines)

    def raise_if_any(self) -> None:
        if self.problems:
            raise TaskDataError(self.message())


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``--data-dir`` if given, else ``$AVEYB_DATA_DIR``, else None."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def find_file(folder: Path, stem: str) -> Path | None:
    """``stem.jsonl`` or ``stem.jsonl.gz`` inside ``folder`` (None if neither exists)."""
    for suffix in (".jsonl", ".jsonl.gz"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def open_text(path: str | os.PathLike):
    path = str(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """JSON Lines read line by line; every malformed line is reported, not only the first."""
    rows, errors = [], RowErrors(str(path))
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                errors.add(None, f"line {lineno} is not valid JSON ({err.msg}): {line.strip()[:60]!r}")
                continue
            if not isinstance(row, dict):
                errors.add(None, f"line {lineno} is not a JSON object (allowed: one {{...}} object per line)")
                continue
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    errors.raise_if_any()
    return rows


# file suffix (before an optional .gz) -> the ``datasets`` packaged loader that reads it
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}


def table_format(path: str | os.PathLike) -> str | None:
    name = Path(path).name.lower().removesuffix(".gz")
    return next((fmt for suffix, fmt in TABLE_FORMATS.items() if name.endswith(suffix)), None)


def find_split_file(folder: Path, split: str) -> Path | None:
    """``<split>.<jsonl|json|csv|tsv|parquet>[.gz]`` in ``folder`` (``dev``/``valid`` for validation)."""
    for stem in SPLIT_ALIASES[split]:
        for suffix in TABLE_FORMATS:
            for path in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix}.gz"):
                if path.is_file():
                    return path
    return None


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSON Lines / JSON / CSV / TSV / Parquet file (optionally gzipped), read with
    ``datasets``. JSON that ``datasets`` refuses is read again line by line, which names every
    malformed line and accepts rows whose fields change type."""
    path = Path(path)
    fmt = table_format(path)
    if fmt is None:
        raise TaskDataError(f"{path}: unsupported file type; allowed: "
                            f"{', '.join(TABLE_FORMATS)} (each optionally .gz)")
    if not path.is_file():
        raise TaskDataError(f"{path}: no such file")
    try:
        import datasets  # noqa: F401
    except ImportError:
        if fmt == "json":
            return read_jsonl(path)
        raise TaskDataError(f"{path}: reading {fmt} files needs the 'datasets' package: "
                            "pip install 'aveyb[data]'") from None
    try:
        return _read_with_datasets(path, fmt)
    except Exception as err:
        if fmt == "json":
            return read_jsonl(path)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TaskDataError(f"{path}: could not be read as {fmt.upper()}: {first}") from None


def _read_with_datasets(path: Path, fmt: str) -> list[dict[str, Any]]:
    import csv as csv_module
    import tempfile

    import datasets

    bars = datasets.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        # a throw-away cache: user files are read once, and nothing piles up in ~/.cache
        with tempfile.TemporaryDirectory(prefix="aveyb-read-") as cache:
            common = {"keep_in_memory": True, "cache_dir": cache}
            if fmt == "json":
                ds = datasets.Dataset.from_json(str(path), **common)
            elif fmt == "parquet":
                ds = datasets.Dataset.from_parquet(str(path), **common)
            else:  # keep "NA"/"null" texts as text; in TSV quotes are ordinary characters
                extra = {"sep": "\t", "quoting": csv_module.QUOTE_NONE} if fmt == "tsv" else {}
                ds = datasets.Dataset.from_csv(str(path), keep_default_na=False, na_values=[""], **extra, **common)
            return ds.to_list()
    finally:
        if bars:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)


def read_qrels_tsv(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """BEIR qrels: ``query-id<TAB>corpus-id<TAB>score`` with a header row."""
    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as f:
        reader = csv.reader(f, delimiter="\t")
        for lineno, row in enumerate(reader, 1):
            if not row:
                continue
            if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) < 3:
                raise TaskDataError(f"{path}: line {lineno} needs query-id, corpus-id, score; got {row!r}")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise TaskDataError(f"{path}: line {lineno} field 'score' is not a number: {row[2]!r}") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def require(row: dict, key: str, kind: type | tuple, where: str) -> Any:
    """``row[key]`` checked for presence and type, else a TaskDataError naming row and field."""
    if key not in row:
        raise TaskDataError(f"{where}: row {row.get('id', row.get('_id', '?'))!r} has no field {key!r}")
    value = row[key]
    if not isinstance(value, kind):
        raise TaskDataError(
            f"{where}: row {row.get('id', row.get('_id', '?'))!r} field {key!r} should be "
            f"{getattr(kind, '__name__', kind)}, got {type(value).__name__}"
        )
    return value


def split_train_validation(rows: list, fraction: float = 0.05, seed: int = 42) -> tuple[list, list]:
    """The protocol's 95/5 cut (seed 42) of a train split into train / validation."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(rows) * fraction)) if len(rows) > 1 else 0
    val_idx = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in val_idx], [r for i, r in enumerate(rows) if i in val_idx]


def subsample(rows: list, limit: int | None, seed: int = 0) -> list:
    """The first ``limit`` rows of a seeded shuffle (all rows, in order, when limit is None)."""
    if limit is None or len(rows) <= limit:
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in idx]


@dataclass
class RetrievalData:
    """BEIR-form retrieval data for one evaluation split plus training pairs."""

    corpus: dict[str, str]                      # doc id -> text (title + text joined)
    queries: dict[str, str]                     # query id -> text
    qrels: dict[str, dict[str, int]]            # query id -> {doc id: relevance}
    train_pairs: list[tuple[str, str]] = field(default_factory=list)  # (query text, positive doc text)

    def check(self, where: str) -> None:
        """Every problem of the split at once: queries without a relevant document, qrels naming
        documents not in the corpus, empty documents or queries."""
        errors = RowErrors(where)
        for qid in self.queries:
            if qid not in self.qrels or not any(s > 0 for s in self.qrels[qid].values()):
                errors.add(None, f"query {qid!r} has no relevant document in the qrels (allowed: score > 0 for "
                                 "at least one document)")
        for qid, docs in self.qrels.items():
            for did in docs:
                if did not in self.corpus:
                    errors.add(None, f"qrels of query {qid!r} name document {did!r} not in the corpus")
        for did, text in self.corpus.items():
            if not text.strip():
                errors.add(None, f"corpus document {did!r} has empty text")
        for qid, text in self.queries.items():
            if not isinstance(text, str) or not text.strip():
                errors.add(None, f"query {qid!r} has empty text")
        errors.raise_if_any()


def beir_doc_text(row: dict) -> str:
    title = (row.get("title") or "").strip()
    text = (row.get("text") or "").strip()
    return f"{title}. {text}" if title and text else (title or text)


def read_beir_corpus(rows: Iterable[dict], where: str) -> dict[str, str]:
    corpus = {}
    for row in rows:
        did = row.get("_id")
        if did is None:
            raise TaskDataError(f"{where}: corpus row has no field '_id': {str(row)[:80]}")
        corpus[str(did)] = beir_doc_text(row)
    return corpus


def read_beir_queries(rows: Iterable[dict], where: str) -> dict[str, str]:
    queries = {}
    for row in rows:
        qid = row.get("_id")
        if qid is None:
            raise TaskDataError(f"{where}: query row has no field '_id': {str(row)[:80]}")
        if "text" not in row:
            raise TaskDataError(f"{where}: query {qid!r} has no field 'text'")
        queries[str(qid)] = row["text"]
    return queries
