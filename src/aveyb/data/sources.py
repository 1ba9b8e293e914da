"""Document sources for pretraining, named in the config as small dictionaries.

``{"type": ..., ...}`` with type one of

* ``bundled``: the public-domain sample shipped in ``aveyb/resources/corpus`` (no data needed);
* ``corpus``: a directory of ``*.jsonl.gz`` files like the offline kit's ``shared/data/corpus``
  (``path``, optional ``include``: list of file stems);
* ``jsonl``: JSON Lines, plain or ``.gz`` (``path``: a file or glob, ``text_field``: "text");
* ``text``: plain text files (``path``; ``split``: "line" (default), "paragraph" or "file");
* ``parquet``: Parquet files (``path``, ``text_field``; needs ``pyarrow``);
* ``hf``: a Hugging Face dataset, streamed (``name``, ``config``, ``split``, ``text_field``;
  needs ``datasets``), e.g. ``HuggingFaceFW/fineweb`` / ``sample-350BT``;
* ``tokens``: a pre-tokenised flat array of ids (``path``, ``dtype`` uint16|uint32) with
  documents separated by the tokenizer's EOS id, as written by ``aveyb tokenizer encode``.

Documents of several files or sources are interleaved round-robin, one at a time, so a
run sees a mix from its first step. The order is fixed, which makes a data position (the
number of documents read) enough to resume. Empty or whitespace-only documents are skipped
and counted; undecodable bytes are replaced (U+FFFD) and counted.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "resources" / "corpus"
SOURCE_TYPES = ("bundled", "corpus", "jsonl", "text", "parquet", "hf", "tokens")
_KEYS = {
    "bundled": {"type", "include"},
    "corpus": {"type", "path", "include"},
    "jsonl": {"type", "path", "text_field"},
    "text": {"type", "path", "split"},
    "parquet": {"type", "path", "text_field"},
    "hf": {"type", "name", "config", "split", "text_field", "streaming", "revision", "data_files"},
    "tokens": {"type", "path", "dtype", "eos_token_id"},
}


@dataclass
class SourceStats:
    """Counters kept while reading: documents yielded, skipped empty, repaired, unreadable."""

    documents: int = 0
    empty_skipped: int = 0
    undecodable: int = 0
    bad_records: int = 0
    per_file: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"documents": self.documents, "empty_skipped": self.empty_skipped,
                "undecodable": self.undecodable, "bad_records": self.bad_records}


def default_corpus_dir() -> str:
    """The offline kit's corpus: ``$AVEYB_CORPUS_DIR``, else ``../shared/data/corpus``."""
    return os.environ.get("AVEYB_CORPUS_DIR", "../shared/data/corpus")


def validate_source(spec: dict) -> dict:
    """Check a source spec's keys and that its files exist; return it with files resolved."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a data source must be a mapping with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if kind not in SOURCE_TYPES:
        raise ValueError(f"unknown source type {kind!r}; choose one of {list(SOURCE_TYPES)}")
    unknown = set(spec) - _KEYS[kind]
    if unknown:
        raise ValueError(f"source {kind!r} got unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS[kind])}")
    if kind == "hf":
        if "name" not in spec:
            raise ValueError("an 'hf' source needs a 'name' (e.g. HuggingFaceFW/fineweb)")
        return dict(spec)
    return {**spec, "files": resolve_files(spec)}


def resolve_files(spec: dict) -> list[str]:
    kind = spec["type"]
    if kind in ("bundled", "corpus"):
        directory = BUNDLED_CORPUS if kind == "bundled" else Path(spec.get("path") or default_corpus_dir())
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"corpus directory not found: {directory}")
        files = sorted(str(p) for p in Path(directory).glob("*.jsonl.gz"))
        include = spec.get("include")
        if include:
            names = {Path(f).name.removesuffix(".jsonl.gz"): f for f in files}
            missing = [n for n in include if n not in names]
            if missing:
                raise FileNotFoundError(f"corpus files {missing} not in {directory}; have {sorted(names)}")
            files = [names[n] for n in include]
        if not files:
            raise FileNotFoundError(f"no *.jsonl.gz files in corpus directory {directory}")
        return files
    if "path" not in spec:
        raise ValueError(f"a {kind!r} source needs a 'path' (file or glob)")
    pattern = os.path.expanduser(str(spec["path"]))
    files = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"{kind} source: no file matches {spec['path']!r}")
    return files


# ---- readers: each yields raw documents (str, or a numpy array for 'tokens') ----------------

def _decode(raw: bytes, stats: SourceStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.undecodable += 1
        return raw.decode("utf-8", errors="replace")


def _open_bytes(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _read_jsonl(path: str, text_field: str, stats: SourceStats) -> Iterator[str]:
    with _open_bytes(path) as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                record = json.loads(_decode(raw, stats))
                text = record[text_field]
            except (json.JSONDecodeError, KeyError, TypeError):
                stats.bad_records += 1
                continue
            yield text if isinstance(text, str) else str(text)


def _read_text(path: str, split: str, stats: SourceStats) -> Iterator[str]:
    with _open_bytes(path) as fh:
        data = fh.read()
    text = _decode(data, stats)
    if split == "file":
        yield text
    elif split == "paragraph":
        yield from text.split("\n\n")
    elif split == "line":
        yield from text.splitlines()
    else:
        raise ValueError(f"text source: split must be 'line', 'paragraph' or 'file', got {split!r}")


def _read_parquet(path: str, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            yield text or ""


def _read_hf(spec: dict) -> Iterator[str]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("an 'hf' data source needs the 'datasets' package: pip install 'aveyb[data]'") from err
    ds = datasets.load_dataset(
        spec["name"], spec.get("config"), split=spec.get("split", "train"),
        streaming=spec.get("streaming", True), revision=spec.get("revision"),
        **({"data_files": spec["data_files"]} if spec.get("data_files") else {}),
    )
    field_name = spec.get("text_field", "text")
    for record in ds:
        yield record.get(field_name) or ""


def _read_tokens(path: str, dtype: str, eos_id: int) -> Iterator:
    import numpy as np

    array = np.memmap(path, dtype=np.dtype(dtype), mode="r")
    ends = np.flatnonzero(array == eos_id)
    start = 0
    for end in ends:
        yield np.asarray(array[start:end], dtype=np.int64)
        start = int(end) + 1
    if start < len(array):
        yield np.asarray(array[start:], dtype=np.int64)


def _source_streams(spec: dict, stats: SourceStats, eos_id: int | None) -> list[Iterator]:
    kind = spec["type"]
    if kind == "hf":
        return [_read_hf(spec)]
    files = spec.get("files") or resolve_files(spec)
    if kind in ("bundled", "corpus", "jsonl"):
        return [_read_jsonl(f, spec.get("text_field", "text"), stats) for f in files]
    if kind == "text":
        return [_read_text(f, spec.get("split", "line"), stats) for f in files]
    if kind == "parquet":
        return [_read_parquet(f, spec.get("text_field", "text")) for f in files]
    if kind == "tokens":
        eos = spec.get("eos_token_id", eos_id)
        if eos is None:
            raise ValueError("a 'tokens' source needs the EOS id (from the tokenizer or 'eos_token_id')")
        return [_read_tokens(f, spec.get("dtype", "uint16"), int(eos)) for f in files]
    raise ValueError(f"unknown source type {kind!r}")


def _is_empty(doc) -> bool:
    if isinstance(doc, str):
        return not doc or doc.isspace()
    return len(doc) == 0


def iter_documents(sources: list[dict], stats: SourceStats | None = None,
                   eos_token_id: int | None = None) -> Iterator:
    """Yield the documents of all ``sources`` interleaved round-robin (one pass, fixed order).

    Empty and whitespace-only documents are skipped and counted in ``stats``.
    """
    stats = stats if stats is not None else SourceStats()
    streams: list[Iterator] = []
    for spec in sources:
        streams.extend(_source_streams(spec, stats, eos_token_id))
    while streams:
        alive = []
        for stream in streams:
            doc = next(stream, None)
            if doc is None:
                continue
            alive.append(stream)
            if _is_empty(doc):
                stats.empty_skipped += 1
                continue
            stats.documents += 1
            yield doc
        streams = alive


def read_texts(sources: list[dict], limit_chars: int | None = None) -> Iterator[str]:
    """Plain texts of ``sources`` (for tokenizer training), up to ``limit_chars`` characters."""
    total = 0
    for doc in iter_documents([validate_source(s) for s in sources]):
        if not isinstance(doc, str):
            raise ValueError("tokenizer training needs text sources, not 'tokens'")
        yield doc
        total += len(doc)
        if limit_chars is not None and total >= limit_chars:
            return


__all__ = [
    "BUNDLED_CORPUS",
    "SOURCE_TYPES",
    "SourceStats",
    "default_corpus_dir",
    "iter_documents",
    "read_texts",
    "validate_source",
]
