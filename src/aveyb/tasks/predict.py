"""``aveyb predict``: predictions of a model saved by ``aveyb finetune`` for new data.

The task family and the input settings (EOS, maximum length, QA windows and decoding, retrieval
prefixes) come from the saved config (``aveyb_task``, :mod:`aveyb.tasks.export`), so inputs are
built exactly as in fine-tuning. Input: JSON Lines or CSV with the family's columns
(``Family.input_columns``); output: one JSON object per input row, in input order, carrying its ``id``
(the row's own, else its 1-based row number).
"""

from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from aveyb.tasks.export import read_task_settings
from aveyb.tasks.families import FAMILIES


class PredictError(ValueError):
    """Bad input to ``aveyb predict``: the message names the file, the row and the column."""


# How the model runs: as saved, or through aveyb.serving's CPU path (exact), or int8 (an opt-in
# approximation: aveyb.quantize).
SERVING = ("reference", "cpu-fast", "cpu-int8")


# ---- reading ----------------------------------------------------------------------------------
def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON Lines (``.jsonl``, ``.json``) or CSV (``.csv``, ``.tsv``) file."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    raise PredictError(f"{path}: unknown input format {suffix!r}; use .jsonl, .json (JSON Lines), .csv or .tsv")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from aveyb.tasks.data import read_jsonl  # every malformed line reported at once, as for training data

    rows = read_jsonl(path)
    if not rows:
        raise PredictError(f"{path}: no rows")
    return rows


def _row_id(row: dict, number: int):
    return row.get("id", number)


def input_text(row: dict, key: str, where: str, family: str) -> str:
    """The non-empty string in column ``key`` of an input row, else an error naming the row."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else ("is empty" if isinstance(value, str) else "is not a string")
        raise PredictError(f"{where}: column {key!r} {problem}; {family.replace('_', ' ')} needs "
                           f"{FAMILIES[family].input_columns}")
    return value


def _where(path, number: int, row: dict) -> str:
    rid = row.get("id")
    return f"{path}: row {number}" + (f" (id {rid!r})" if rid is not None else "")


# ---- the saved model ----------------------------------------------------------------------------
def saved_task(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The saved task settings, or for a model saved elsewhere, its family read from its head."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise PredictError(f"{model_dir}: no config.json; --model must be a folder saved by `aveyb finetune`")
    config = json.loads(config_path.read_text())
    settings = read_task_settings(config)
    if settings is None:
        if "modules.json" in os.listdir(model_dir):
            return {"family": "retrieval"}
        heads = [f.name for arch in config.get("architectures") or [] for f in FAMILIES.values()
                 if f.head_suffix and arch.endswith(f.head_suffix)]
        if not heads:
            raise PredictError(f"{model_dir}: config.json records no fine-tuned task (no 'aveyb_task', and "
                               f"architectures {config.get('architectures')} have no task head); save the model "
                               "with `aveyb finetune`")
        settings = {"family": heads[0]}
    if settings.get("family") not in FAMILIES:
        raise PredictError(f"{config_path}: aveyb_task.family={settings.get('family')!r}; allowed: {list(FAMILIES)}")
    return settings


def _run_config(settings: dict, batch_size: int, device: str, progress: bool):
    from aveyb.tasks.config import FinetuneConfig

    known = {k: settings[k] for k in ("max_length", "append_eos", "tc_decoding", "qa_head", "doc_stride", "n_best",
                                      "max_answer_length", "query_prefix", "document_prefix") if k in settings}
    return FinetuneConfig(**known, eval_batch_size=batch_size, device=device, progress=progress)


def max_length(cfg, model, tokenizer) -> int:
    """The input length of predictions: the saved setting, else what the model and tokenizer allow."""
    from aveyb.tasks.training import resolve_max_length

    return resolve_max_length(cfg, model.config, tokenizer)


# ---- entry points ---------------------------------------------------------------------------------
def load_predictor(head: str, model_dir, device, serving: str = "reference"):
    """The saved ``head`` model for prediction, run as ``serving`` says (one of ``SERVING``)."""
    from aveyb.tasks.training import load_model

    model = load_model(head, model_dir)
    if serving == "reference":
        return model
    if getattr(device, "type", str(device)) != "cpu":
        raise PredictError(f"--serving {serving} is a CPU path; add --device cpu (on a GPU the fused kernels serve)")
    if model.config.model_type != "aveyb":
        raise PredictError(f"--serving {serving} serves Avey-B; {model_dir} holds a {model.config.model_type} model")
    from aveyb.serving import optimize_for_cpu

    return optimize_for_cpu(model, int8=serving == "cpu-int8")


def predict(model_dir: str | os.PathLike, input_path: str | os.PathLike, batch_size: int = 64,
            device: str = "auto", progress: bool = True, serving: str = "reference") -> list[dict[str, Any]]:
    """Predictions for every row of ``input_path`` (each with its ``id``), in input order; ``serving``
    (``SERVING``) runs an Avey-B model through the CPU fast path or int8."""
    from aveyb.tasks.training import select_device

    if serving not in SERVING:
        raise PredictError(f"serving={serving!r} is not allowed; choose one of {list(SERVING)}")
    settings = saved_task(model_dir)
    rows = read_rows(input_path)
    cfg = _run_config(settings, batch_size, device, progress)
    where = partial(_where, input_path)
    family = FAMILIES[settings["family"]]
    results = family.predict_rows(str(model_dir), rows, where, cfg, select_device(cfg), settings, serving=serving)
    return [{"id": _row_id(row, n), **res} for n, (row, res) in enumerate(zip(rows, results), 1)]


def write_jsonl(records: list[dict], path: str | os.PathLike | None) -> None:
    """One JSON object per line to ``path`` (stdout when None)."""
    import sys

    if path is None:
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
