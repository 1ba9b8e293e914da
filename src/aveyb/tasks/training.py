"""Shared fine-tuning machinery: model and tokenizer loading, EOS handling, batching, and the
training loop (gradient accumulation, the paper's AdamW β=(0.9, 0.95), ε=1e-5, wd 0.1 and
linear decay after 10% warm-up, bf16 autocast on GPU, per-run checkpoints).

Seeding, the device, autocast, the optimizer, the schedule, clipping and the progress bar are
:mod:`aveyb.engine`'s, shared with pretraining; the names below adapt them to a
:class:`FinetuneConfig` for the family modules.

Architecture-agnostic: models come from ``AutoModelFor...``, so any Hugging Face encoder works.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from aveyb import engine
from aveyb.tasks.config import FinetuneConfig
from aveyb.tasks.export import save_finetuned, task_settings


class TaskError(ValueError):
    """A fine-tuning run that cannot proceed (wrong model head, bad configuration, ...)."""


set_seed = engine.seed_everything
progress = engine.progress_bar


def select_device(cfg: FinetuneConfig) -> torch.device:
    return engine.pick_device(cfg.device)


def autocast(cfg: FinetuneConfig, device: torch.device):
    return engine.autocast(cfg.precision, device)


def load_tokenizer(path: str):
    """A trained model's tokenizer, its vocabulary as trained (:func:`aveyb.data.tokenizer.load_tokenizer`
    with ``extend=False``); a :class:`TaskError` when none loads."""
    from aveyb.architectures import register_all
    from aveyb.data import tokenizer

    register_all()  # Avey-B's and NeoBERT's tokenizer classes resolve through AutoTokenizer
    try:
        return tokenizer.load_tokenizer(path, extend=False)
    except Exception as err:
        raise TaskError(f"could not load a tokenizer from {path!r}: {err}") from err


@contextmanager
def quiet_loading():
    """Silence transformers while a checkpoint loads for fine-tuning: its LOAD REPORT (a table in
    raw ANSI codes saying that the new head is untrained, on every run) and weight-loading bars."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(head: str, path: str, **kwargs):
    """``AutoModelFor<head>.from_pretrained(path, **kwargs)``, with a clear error when the
    architecture has no such head."""
    from aveyb.architectures import auto_class
    from aveyb.model.modeling_aveyb import (
        CorruptWeightsError,
        refuse_non_finite_weights,
        unreadable_weights_message,
    )

    auto_cls = auto_class(head)  # registers Avey-B and NeoBERT with the Auto classes
    try:
        with quiet_loading():
            model = auto_cls.from_pretrained(path, **kwargs)
    except CorruptWeightsError as err:
        raise TaskError(str(err)) from err
    except ValueError as err:
        if "Unrecognized configuration class" in str(err) or "Unrecognized model" in str(err):
            raise TaskError(
                f"model {path!r} has no {head.replace('_', ' ')} head: {auto_cls.__name__} does not support its "
                f"architecture ({str(err).splitlines()[0][:200]})"
            ) from err
        raise
    except Exception as err:
        if type(err).__name__ == "SafetensorError":  # any architecture: its message names no file
            raise TaskError(unreadable_weights_message(path, err)) from err
        raise
    try:  # every architecture: NaN weights would only show as a NaN loss, blamed on the learning rate
        refuse_non_finite_weights(model, path)
    except CorruptWeightsError as err:
        raise TaskError(str(err)) from err
    return model


def resolve_max_length(cfg: FinetuneConfig, model_config, tokenizer) -> int:
    """``cfg.max_length``, else the model's context (``max_position_embeddings``), else the
    tokenizer's ``model_max_length``, else 512."""
    if cfg.max_length:
        return cfg.max_length
    n = getattr(model_config, "max_position_embeddings", None)
    if n:
        return int(n)
    m = getattr(tokenizer, "model_max_length", None)
    return int(m) if m and m < 1_000_000 else 512


def end_token_id(tokenizer) -> int | None:
    """The token appended to every input: EOS, else SEP (BERT-style tokenizers end with it already)."""
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id


def finish_ids(ids: list[int], tokenizer, max_length: int, append_eos: bool = True) -> list[int]:
    """Truncate to ``max_length`` keeping room for the EOS, and append it unless already last."""
    eos = end_token_id(tokenizer) if append_eos else None
    if eos is None:
        return ids[:max_length]
    if ids and ids[-1] == eos:
        ids = ids[:-1]
    return ids[: max_length - 1] + [eos]


def encode_text(tokenizer, text: str | None, text_b: str | None, max_length: int, append_eos: bool) -> list[int]:
    """One input: a text, or a pair joined with the tokenizer's separators (its pair template,
    else ``a SEP b`` with SEP/EOS), then EOS."""
    if text_b is None:
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        return finish_ids(list(ids), tokenizer, max_length, append_eos)
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else end_token_id(tokenizer)
    enc = tokenizer(text, text_b, add_special_tokens=True, truncation="longest_first", max_length=max_length - 2)
    ids = list(enc["input_ids"])
    seq = enc.sequence_ids() if getattr(tokenizer, "is_fast", False) else None
    if seq is not None and sep is not None:
        # no pair template (e.g. byte-level BPE): put a separator between the two texts
        joins = [i for i in range(1, len(seq)) if seq[i - 1] == 0 and seq[i] == 1]
        if joins:
            ids = ids[: joins[0]] + [sep] + ids[joins[0]:]
    return finish_ids(list(ids), tokenizer, max_length, append_eos)


def pad_batch(features: Sequence[dict[str, Any]], pad_id: int, label_keys: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (with ``pad_id``) and list-valued labels (with -100); stack scalars."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {
        "input_ids": torch.tensor([f["input_ids"] + [pad_id] * (width - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"]))
                                        for f in features]),
    }
    for key in label_keys:
        vals = [f[key] for f in features]
        if isinstance(vals[0], list):
            batch[key] = torch.tensor([v + [-100] * (width - len(v)) for v in vals])
        else:
            batch[key] = torch.tensor(vals)
    return batch


def make_optimizer(model: torch.nn.Module, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW with the protocol's β, ε, weight decay; no decay on biases, norms and scalars."""
    return engine.adamw(model, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, total_steps: int, cfg: FinetuneConfig):
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0 (or constant)."""
    def factor(step: int) -> float:
        return engine.lr_factor(step, total_steps, cfg.lr_schedule, cfg.warmup_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def total_steps(cfg: FinetuneConfig, n_examples: int) -> int:
    if cfg.max_steps is not None:  # 0: evaluate only
        return cfg.max_steps
    return max(1, math.ceil((cfg.epochs or 1.0) * n_examples / cfg.batch_size))


def train_loop(model: torch.nn.Module, features: list[dict], collate: Callable[[list[dict]], dict],
               cfg: FinetuneConfig, device: torch.device, loss_fn: Callable | None = None,
               desc: str = "train") -> dict[str, float]:
    """Train for ``total_steps`` optimiser steps of ``cfg.batch_size`` examples (accumulated over
    ``grad_accumulation`` micro-batches), reshuffling each epoch with ``cfg.seed``. ``max_steps=0``
    trains nothing (evaluate only). Inside :func:`~aveyb.tasks.checkpoint.checkpoints_in` the loop
    checkpoints every ``cfg.checkpoint_every`` steps and resumes from the newest checkpoint."""
    steps = total_steps(cfg, len(features))
    if steps == 0:
        return {"train_steps": 0, "train_features": len(features)}
    if not features:
        raise TaskError("no training examples")
    micro = max(1, cfg.batch_size // cfg.grad_accumulation)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, steps, cfg)
    loop = _LoopState(rng=random.Random(cfg.seed))
    model.to(device).train()
    model.zero_grad(set_to_none=True)  # each step starts from no gradients (engine.optimizer_step clears them)
    saver = _Checkpointer(cfg, len(features), steps)
    saver.resume(model, optimizer, scheduler, loop)
    bar = progress(total=steps, desc=desc, enabled=cfg.progress, initial=loop.step)
    if loop.losses:
        bar.set_postfix(loss=f"{loop.losses[-1]:.4f}")
    while loop.step < steps:
        step_loss = 0.0
        for _ in range(cfg.grad_accumulation):
            batch = {k: (v.to(device) if torch.is_tensor(v) else v)
                     for k, v in collate([features[i] for i in loop.next_batch(micro, len(features))]).items()}
            with autocast(cfg, device):
                loss = loss_fn(model, batch) if loss_fn else model(**batch).loss
            if not torch.isfinite(loss):
                raise TaskError(f"training loss became {loss.item()} at step {loop.step}; lower the learning rate")
            (loss / cfg.grad_accumulation).backward()
            step_loss += loss.item() / cfg.grad_accumulation
        engine.optimizer_step(model, optimizer, cfg.max_grad_norm)
        scheduler.step()
        loop.losses.append(step_loss)
        loop.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")
        saver.maybe_save(model, optimizer, scheduler, loop, last=loop.step == steps)
    bar.close()
    tail = loop.losses[-max(1, len(loop.losses) // 10):]
    return {"train_loss": sum(tail) / len(tail), "train_steps": steps, "train_features": len(features)}


@dataclass
class _LoopState:
    """What the loop carries from step to step (and a checkpoint restores)."""

    rng: random.Random
    order: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    step: int = 0

    def next_batch(self, size: int, n: int) -> list[int]:
        if len(self.order) < size:  # a new epoch: reshuffle
            more = list(range(n))
            self.rng.shuffle(more)
            self.order.extend(more)
        idx, self.order = self.order[:size], self.order[size:]
        return idx


class _Checkpointer:
    """Saves and restores the loop in the run's checkpoint folder (see aveyb.tasks.checkpoint)."""

    def __init__(self, cfg: FinetuneConfig, n_features: int, steps: int):
        from aveyb.tasks import checkpoint

        self.ck = checkpoint
        self.folder = checkpoint.current_folder() if cfg.checkpoint_every else None
        self.every = cfg.checkpoint_every
        self.key = checkpoint.fingerprint(cfg, n_features, steps)

    def resume(self, model, optimizer, scheduler, loop: _LoopState) -> None:
        path = self.ck.latest(self.folder) if self.folder is not None else None
        if path is None:
            return
        state = self.ck.load(path)
        if state.get("fingerprint") != self.key:
            print(f"[aveyb] {path} belongs to a run with other options or data: starting from step 0")
            self.ck.remove(self.folder)
            return
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        loop.rng.setstate(state["loop_rng"])
        loop.order, loop.losses, loop.step = list(state["order"]), list(state["losses"]), int(state["step"])
        self.ck.set_rng_state(state["rng"])
        print(f"[aveyb] resumed fine-tuning from {path} (step {loop.step})")

    def maybe_save(self, model, optimizer, scheduler, loop: _LoopState, last: bool) -> None:
        if self.folder is None or last or loop.step % self.every:
            return  # the last step is followed by evaluation and results.json, not by a checkpoint
        self.ck.save(self.folder, loop.step, {
            "fingerprint": self.key, "step": loop.step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "loop_rng": loop.rng.getstate(), "order": loop.order, "losses": loop.losses, "rng": self.ck.rng_state(),
        })


@torch.no_grad()
def predict_batches(model, features: list[dict], collate, cfg: FinetuneConfig, device, desc="eval",
                    output: Callable[[Any], Any] = lambda out: out.logits):
    """Yield ``(indices, outputs)`` over ``features`` in batches sorted by length (less padding)."""
    model.to(device).eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    bs = cfg.eval_batch_size
    for s in progress(range(0, len(order), bs), total=math.ceil(len(order) / bs), desc=desc, enabled=cfg.progress):
        idx = order[s:s + bs]
        batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
        with autocast(cfg, device):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        yield idx, output(out)


def encode_and_train(model, tokenizer, encode: Callable, splits, task, cfg: FinetuneConfig, device,
                     label_keys: Sequence[str] = ("labels",)) -> tuple[dict, list[dict], list[dict] | None]:
    """Encode the three splits with ``encode(rows, where=...)``, train on ``train``; returns
    (training stats, encoded validation, encoded test or None when there is none or it is off)."""
    train = encode(splits.train, where=f"{task.name}/train")
    val = encode(splits.validation, where=f"{task.name}/validation")
    test = (encode(splits.test, where=f"{task.name}/test")
            if splits.test is not None and cfg.evaluate_test else None)
    torch.manual_seed(cfg.seed)
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id, label_keys=tuple(label_keys))
    stats = train_loop(model, train, collate, cfg, device, desc=f"{task.name} train")
    return stats, val, test


def run_labelled(head: str, task, splits, labels: list[str], model_path: str, cfg: FinetuneConfig, device,
                 save_dir, encode: Callable, evaluate: Callable) -> dict[str, float]:
    """The run of a family whose head picks one of ``labels`` (per sequence or per token): build
    ``head`` with the task's labels, encode (``encode(..., tokenizer, label2id, max_length,
    append_eos)``) and train, score validation and test with ``evaluate(model, feats, labels,
    tokenizer, cfg, device, desc=...)``, and save the model to ``save_dir`` when given."""
    tokenizer = load_tokenizer(model_path)
    label2id = {label: i for i, label in enumerate(labels)}
    model = load_model(head, model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    max_len = resolve_max_length(cfg, model.config, tokenizer)
    enc = partial(encode, tokenizer=tokenizer, label2id=label2id, max_length=max_len, append_eos=cfg.append_eos)
    stats, val, test = encode_and_train(model, tokenizer, enc, splits, task, cfg, device)
    out = dict(stats)
    for name, feats in (("validation", val), ("test", test)):
        if feats:
            for k, v in evaluate(model, feats, labels, tokenizer, cfg, device, desc=f"{task.name} {name}").items():
                out[f"{name}/{k}"] = v
    if save_dir is not None:
        save_finetuned(model, tokenizer, save_dir, task_settings(task, cfg, max_len))
    return out
