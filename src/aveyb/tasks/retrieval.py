"""Dense retrieval with sentence-transformers: mean-pooled embeddings, trained with the
(cached) multiple-negatives ranking loss on (query, positive) pairs with in-batch negatives,
inputs prefixed ``Query: `` / ``Document: `` and ended with EOS; corpus and queries encoded in
batches with a progress bar; exact nearest-neighbour search (cosine) with torch.

Scores: nDCG@10, MRR@10, Recall@1/10/100 over the full corpus (pytrec_eval), and the paper's
nDCG@10 with the corpus restricted to the judged documents of the split.
"""

from __future__ import annotations

import math

import torch

from aveyb.evaluation.metrics import retrieval_metrics
from aveyb.tasks.data import RetrievalData, TaskDataError
from aveyb.tasks.export import save_sentence_model, task_settings
from aveyb.tasks.families import FAMILIES
from aveyb.tasks.predict import PredictError, input_text
from aveyb.tasks.training import (
    TaskError,
    autocast,
    end_token_id,
    progress,
    quiet_loading,
    train_loop,
)


def load_sentence_model(model_path: str, max_length: int | None, device):
    from sentence_transformers import SentenceTransformer

    from aveyb.architectures import register_all

    register_all()

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # pragma: no cover
        from sentence_transformers import models

    from aveyb.model.modeling_aveyb import (
        CorruptWeightsError,
        refuse_non_finite_weights,
        unreadable_weights_message,
    )

    try:
        with quiet_loading():
            transformer = models.Transformer(model_path, max_seq_length=max_length)
        refuse_non_finite_weights(transformer.auto_model, model_path)
    except CorruptWeightsError as err:
        raise TaskError(str(err)) from err
    except ValueError as err:
        raise TaskError(f"model {model_path!r} cannot be loaded as a sentence encoder: {err}") from err
    except Exception as err:
        if type(err).__name__ == "SafetensorError":
            raise TaskError(unreadable_weights_message(model_path, err)) from err
        raise
    tok = transformer.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.sep_token or tok.unk_token
    if max_length is None:
        n = getattr(transformer.auto_model.config, "max_position_embeddings", None) or 512
        transformer.max_seq_length = int(n)
    dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dim(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device=str(device))


def tokenize(model, texts: list[str], append_eos: bool) -> dict[str, torch.Tensor]:
    """sentence-transformers tokenisation, then EOS appended after the last real token of each row."""
    feats = model.tokenize(texts)
    tok = model.tokenizer
    eos = end_token_id(tok) if append_eos else None
    if eos is None:
        return feats
    ids, mask = feats["input_ids"], feats["attention_mask"]
    lengths = mask.sum(1)
    last = ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    need = last != eos
    if not need.any():
        return feats
    max_len = model.max_seq_length
    pad = tok.pad_token_id
    width = min(ids.shape[1] + 1, max_len)
    new_ids = torch.full((ids.shape[0], width), pad, dtype=ids.dtype)
    new_mask = torch.zeros((ids.shape[0], width), dtype=mask.dtype)
    for r in range(ids.shape[0]):
        n = int(lengths[r])
        row = ids[r, :n].tolist()
        if need[r]:
            row = row[: width - 1] + [eos]
        new_ids[r, : len(row)] = torch.tensor(row, dtype=ids.dtype)
        new_mask[r, : len(row)] = 1
    out = {k: v for k, v in feats.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
    out["input_ids"], out["attention_mask"] = new_ids, new_mask
    if "token_type_ids" in feats:
        out["token_type_ids"] = torch.zeros_like(new_ids)
    return out


@torch.no_grad()
def encode(model, texts: list[str], cfg, device, desc: str) -> torch.Tensor:
    """L2-normalised embeddings of ``texts`` in batches (sorted by length), with a progress bar."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    out = torch.empty(len(texts), dim_fn())
    bs = cfg.eval_batch_size
    for s in progress(range(0, len(order), bs), total=math.ceil(len(order) / bs), desc=desc, enabled=cfg.progress):
        idx = order[s:s + bs]
        feats = {k: (v.to(device) if torch.is_tensor(v) else v)
                 for k, v in tokenize(model, [texts[i] for i in idx], cfg.append_eos).items()}
        with autocast(cfg, device):
            emb = model(feats)["sentence_embedding"].float()
        out[idx] = torch.nn.functional.normalize(emb, dim=-1).cpu()
    return out


def search(query_emb: torch.Tensor, doc_emb: torch.Tensor, k: int, chunk: int = 1024,
           doc_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product (cosine on normalised vectors), queries in chunks."""
    k = min(k, int(doc_mask.sum()) if doc_mask is not None else doc_emb.shape[0])
    scores, idx = [], []
    for s in range(0, query_emb.shape[0], chunk):
        sim = query_emb[s:s + chunk] @ doc_emb.T
        if doc_mask is not None:
            sim = sim.masked_fill(~doc_mask, float("-inf"))
        v, i = sim.topk(k, dim=1)
        scores.append(v)
        idx.append(i)
    return torch.cat(scores), torch.cat(idx)


def evaluate(model, data: RetrievalData, cfg, device, desc: str, doc_cache: dict | None = None) -> dict[str, float]:
    qids = sorted(data.queries)
    for q in qids:
        if q not in data.qrels or not any(s > 0 for s in data.qrels[q].values()):
            raise TaskDataError(f"{desc}: query {q!r} has no relevant document in the qrels")
    dids = list(data.corpus)
    key = id(data.corpus)
    if doc_cache is not None and key in doc_cache:
        doc_emb = doc_cache[key]
    else:
        doc_emb = encode(model, [cfg.document_prefix + data.corpus[d] for d in dids], cfg, device, f"{desc} corpus")
        if doc_cache is not None:
            doc_cache[key] = doc_emb
    q_emb = encode(model, [cfg.query_prefix + data.queries[q] for q in qids], cfg, device, f"{desc} queries")
    scores, idx = search(q_emb, doc_emb, 100)
    run = {q: {dids[j]: float(s) for s, j in zip(scores[r].tolist(), idx[r].tolist())} for r, q in enumerate(qids)}
    qrels = {q: data.qrels[q] for q in qids}
    out = retrieval_metrics(qrels, run)
    # paper (EncodEval): corpus restricted to judged documents, nDCG@10 within the retrieved top 10
    judged = {d for q in qids for d in qrels[q]}
    mask = torch.tensor([d in judged for d in dids])
    scores, idx = search(q_emb, doc_emb, 10, doc_mask=mask)
    run10 = {q: {dids[j]: float(s) for s, j in zip(scores[r].tolist(), idx[r].tolist())} for r, q in enumerate(qids)}
    out["paper_ndcg@10"] = retrieval_metrics(qrels, run10)["ndcg@10"]
    return out


def run(task, splits, labels, model_path: str, cfg, device, save_dir=None) -> dict[str, float]:
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # pragma: no cover
        from sentence_transformers import losses

    pairs = splits.train
    for i, (q, d) in enumerate(pairs):
        if not str(q).strip() or not str(d).strip():
            raise TaskDataError(f"{task.name}/train: pair {i} has an empty {'query' if not str(q).strip() else 'document'}")
    torch.manual_seed(cfg.seed)
    model = load_sentence_model(model_path, cfg.max_length, device)
    if cfg.retrieval_loss == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size,
                                                         show_progress_bar=False)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    loss.to(device)
    feats = [{"input_ids": [0], "q": q, "d": d} for q, d in pairs]

    def collate(batch):
        q = tokenize(model, [cfg.query_prefix + f["q"] for f in batch], cfg.append_eos)
        d = tokenize(model, [cfg.document_prefix + f["d"] for f in batch], cfg.append_eos)
        return {**{f"q.{k}": v for k, v in q.items()}, **{f"d.{k}": v for k, v in d.items()}}

    def loss_fn(_model, batch):
        q = {k[2:]: v for k, v in batch.items() if k.startswith("q.")}
        d = {k[2:]: v for k, v in batch.items() if k.startswith("d.")}
        return loss([q, d], None)

    if feats:
        stats = train_loop(model, feats, collate, cfg, device, loss_fn=loss_fn, desc=f"{task.name} train")
    else:  # a BEIR folder with only evaluation qrels: score the encoder as it is
        print(f"[aveyb] {task.name}: no training pairs (no qrels/train.tsv): evaluating zero-shot")
        stats = {"train_steps": 0, "train_features": 0}
    out = dict(stats)
    cache: dict = {}
    for name in ("validation", "test"):
        data = getattr(splits, name)
        if data is None or (name == "test" and not cfg.evaluate_test):
            continue
        for k, v in evaluate(model, data, cfg, device, f"{task.name} {name}", cache).items():
            out[f"{name}/{k}"] = v
    if save_dir is not None:
        save_sentence_model(model, save_dir, task_settings(task, cfg, model.max_seq_length))
    return out


def predict_rows(model_dir, rows, where, cfg, device, settings, serving="reference") -> list[dict]:
    """The embedding of every input row (``aveyb predict``), with the prefix used in training."""
    texts = []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        present = [k for k in ("query", "document", "text") if row.get(k) not in (None, "")]
        if len(present) != 1:
            raise PredictError(f"{at}: {'columns ' + str(present) + ' are all set' if present else 'no text column'}; "
                               f"retrieval needs exactly one of {FAMILIES['retrieval'].input_columns}")
        key = present[0]
        prefix = {"query": cfg.query_prefix, "document": cfg.document_prefix, "text": ""}[key]
        texts.append(prefix + input_text(row, key, at, "retrieval"))
    if serving != "reference":
        raise PredictError(f"--serving {serving} serves the classification, token-classification and QA heads; "
                           "retrieval embeds through sentence-transformers: leave --serving at 'reference'")
    model = load_sentence_model(str(model_dir), cfg.max_length, device)
    embeddings = encode(model, texts, cfg, device, desc="predict")
    return [{"embedding": e} for e in embeddings.tolist()]
