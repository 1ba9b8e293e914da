"""Saving a fine-tuned model so that transformers, its pipelines, sentence-transformers and
``aveyb predict`` load it back.

The folder is a plain ``save_pretrained`` folder (weights, config, tokenizer). Its config
records the task: ``finetuning_task`` (transformers' own key, the task name), ``id2label`` /
``label2id`` (set when the head was built), and ``aveyb_task``: the task family and the
settings its inputs were built with (EOS, maximum length, QA decoding, retrieval prefixes), so
that predictions are made the way the model was trained.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

MODEL_DIR = "model"
TASK_KEY = "aveyb_task"


def task_settings(task, cfg, max_length: int | None) -> dict[str, Any]:
    """What ``aveyb predict`` needs to rebuild the inputs and decode the outputs of ``task``."""
    return {
        "name": task.name,
        "family": task.family,
        "max_length": max_length,
        "append_eos": cfg.append_eos,
        "tc_decoding": cfg.tc_decoding,
        "qa_head": cfg.qa_head,
        "doc_stride": cfg.doc_stride,
        "n_best": cfg.n_best,
        "max_answer_length": cfg.max_answer_length,
        "allow_no_answer": bool(task.options.get("v2")),
        "query_prefix": cfg.query_prefix,
        "document_prefix": cfg.document_prefix,
    }


def _mark_config(config, settings: dict[str, Any], tokenizer=None) -> None:
    config.finetuning_task = settings["name"]
    setattr(config, TASK_KEY, dict(settings))
    if tokenizer is not None and getattr(config, "tokenizer_class", None) is None:
        # transformers 4.x pipelines load a tokenizer for a model type they do not know only from this
        config.tokenizer_class = type(tokenizer).__name__


def _replace_dir(build, save_dir: Path) -> Path:
    """Write the folder with ``build(tmp)`` beside ``save_dir``, then swap it in: a crash while
    saving never leaves a half-written model where a finished one was."""
    save_dir = Path(save_dir)
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = save_dir.with_name(f".{save_dir.name}.saving")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        if save_dir.exists():
            shutil.rmtree(save_dir)
        os.replace(tmp, save_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_dir


def save_finetuned(model, tokenizer, save_dir: str | os.PathLike, settings: dict[str, Any]) -> Path:
    """``save_pretrained`` of a fine-tuned transformers model and its tokenizer, task recorded."""
    _mark_config(model.config, settings, tokenizer)

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _replace_dir(build, Path(save_dir))


def save_sentence_model(model, save_dir: str | os.PathLike, settings: dict[str, Any]) -> Path:
    """sentence-transformers' own save (Transformer at the root, ``1_Pooling``, ``modules.json``),
    so that ``SentenceTransformer(save_dir)`` rebuilds the mean-pooled encoder."""
    _mark_config(model[0].auto_model.config, settings)
    return _replace_dir(lambda tmp: model.save(str(tmp)), Path(save_dir))


def read_task_settings(config) -> dict[str, Any] | None:
    """The ``aveyb_task`` settings of a saved model's config (object or dict), or None."""
    value = config.get(TASK_KEY) if isinstance(config, dict) else getattr(config, TASK_KEY, None)
    return dict(value) if isinstance(value, dict) else None
