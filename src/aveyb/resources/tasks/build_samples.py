"""Rebuild the task samples shipped with aveyb from the shared offline data kit.

    python src/aveyb/resources/tasks/build_samples.py /path/to/shared/data

Deterministic: the first rows of a random.Random(0) shuffle of each split. Retrieval keeps
every judged document of the sampled queries plus distractors, each cut to 600 characters.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"train": 200, "validation": 50, "test": 50}
TASKS = ("sentiment_rt", "trec_qc", "sms_spam", "ner_wnut", "paraphrase_bible")
KEEP_META = ("task_type", "labels", "metric", "source", "license")


def read(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def find(folder: Path, stem: str) -> Path:
    for suffix in (".jsonl", ".jsonl.gz"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    raise FileNotFoundError(folder / stem)


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def sample(rows: list[dict], n: int) -> list[dict]:
    rows = list(rows)
    random.Random(0).shuffle(rows)
    return rows[:n]


def meta(src: Path, extra: str) -> dict:
    m = json.loads((src / "meta.json").read_text())
    out = {k: m[k] for k in KEEP_META if k in m}
    out["sample"] = extra
    return out


def main(data_dir: str) -> None:
    tasks = Path(data_dir) / "tasks"
    for name in TASKS:
        src, dst = tasks / name, HERE / name
        counts = {}
        for split, n in SIZES.items():
            rows = sample(read(find(src, split)), n)
            write(dst / f"{split}.jsonl", rows)
            counts[split] = len(rows)
        m = meta(src, f"aveyb package sample of the offline data kit's {name}: first rows of a Random(0) shuffle")
        m["counts"] = counts
        (dst / "meta.json").write_text(json.dumps(m, indent=2) + "\n")
    # retrieval: sampled queries, their documents, 100 distractors; texts cut to 600 characters
    src, dst = tasks / "news_retrieval", HERE / "news_retrieval"
    corpus = {r["_id"]: r for r in read(src / "corpus.jsonl.gz")}
    used, counts = set(), {}
    for split, n in SIZES.items():
        queries = sample(read(find(src / "queries", split)), n)
        qrels = [line.rstrip("\n").split("\t") for line in open(src / "qrels" / f"{split}.tsv")][1:]
        keep = {q["_id"] for q in queries}
        rel = [r for r in qrels if r[0] in keep]
        used |= {r[1] for r in rel}
        write(dst / "queries" / f"{split}.jsonl", [{"_id": q["_id"], "text": q["text"]} for q in queries])
        (dst / "qrels").mkdir(parents=True, exist_ok=True)
        (dst / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            "\t".join(r) + "\n" for r in rel))
        counts[split] = len(queries)
    others = sample([d for d in corpus if d not in used], 100)
    docs = [{"_id": d, "text": corpus[d]["text"][:600]} for d in sorted(used | set(others))]
    write(dst / "corpus.jsonl", docs)
    m = meta(src, "aveyb package sample of news_retrieval: sampled queries per split (Random(0)), their judged "
                  "articles plus 100 distractors, article text cut to its first 600 characters")
    m["counts"] = {**counts, "corpus": len(docs)}
    (dst / "meta.json").write_text(json.dumps(m, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
