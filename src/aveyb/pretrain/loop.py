"""The pretraining loop: masked-LM training of any architecture of this package.

One optimizer step consumes one global batch of ``global_batch_tokens`` tokens: every rank
reads the same packed stream and keeps its slice (:func:`aveyb.data.packing.rank_slice`),
runs ``accumulation`` micro-batches, and the loss is the mean over every masked token of
the global batch (each micro-batch weighted by its count of masked tokens), so 1 rank and
N ranks with the same global batch compute the same update.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aveyb.data.masking import IGNORE_INDEX, MaskingConfig, mask_batch
from aveyb.data.packing import SequencePacker, rank_slice
from aveyb.data.sources import validate_source
from aveyb.data.tokenizer import load_tokenizer, model_vocab_size, special_token_ids
from aveyb.pretrain import checkpoint as ckpt
from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.distributed import (
    DistInfo,
    all_reduce_sum,
    init_distributed,
    shutdown,
    sync_replicated_grads,
    wrap_model,
)
from aveyb.pretrain.optim import build_optimizer, lr_factor, set_lr

# Dense bf16 peak of one device, FLOP/s (datasheet, no sparsity), for MFU.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "4090": 165e12}


class TrainingError(RuntimeError):
    """A run that cannot go on (bad input, NaN loss); the message says why."""


class SetupError(TrainingError):
    """A run refused before training starts (wrong run folder, a length the model cannot take):
    a usage error, exit status 2, where a failure during training exits with 3."""


# ---- model -------------------------------------------------------------------------------

def build_model(cfg: PretrainConfig, tokenizer):
    """The masked-LM model of ``cfg.arch`` at ``cfg.model_preset`` sized for ``tokenizer``."""
    from aveyb.architectures import build_masked_lm

    vocab = model_vocab_size(tokenizer)
    overrides = {"pad_token_id": tokenizer.pad_token_id}
    if cfg.arch == "avey-b":
        overrides.update(eos_token_id=tokenizer.eos_token_id, mask_token_id=tokenizer.mask_token_id,
                         sparse_prediction=True)
    overrides.update(cfg.model_overrides)
    return build_masked_lm(cfg.arch, cfg.model_preset, vocab, **overrides)


def check_sequence_length(model, seq_len: int, tokenizer) -> None:
    """Fail early, with a clear message, if the model cannot take ``seq_len`` tokens."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", "") != "aveyb":
        offset = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        if seq_len > limit - offset:
            raise SetupError(f"seq_len={seq_len} is longer than {config.model_type} can take "
                                f"(max_position_embeddings={limit}{f' - {offset}' if offset else ''}); "
                                f"lower seq_len or set model_overrides.max_position_embeddings")
    ids = torch.full((1, seq_len), tokenizer.eos_token_id, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(input_ids=ids)
    except Exception as err:  # the model's own reason, re-raised with context
        raise SetupError(f"the model ({config.model_type}) cannot take a sequence of {seq_len} tokens: {err}") from err
    finally:
        model.train(was_training)


def flops_per_token(model, mask_rate: float) -> float:
    """Approximate training FLOPs per token: 6 × (non-embedding parameters + head on predicted positions).

    Token mixing (Avey-B's ranker and dynamic layers, attention in the baselines) is not
    counted, so MFU is a slight underestimate.
    """
    n_params = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    sparse = bool(getattr(model.config, "sparse_prediction", False))
    return 6.0 * (n_params - embed) + 6.0 * embed * (mask_rate if sparse else 1.0)


def peak_flops(cfg: PretrainConfig, device: torch.device, amp_dtype) -> float:
    if cfg.peak_flops > 0:
        return cfg.peak_flops
    if device.type != "cuda" or amp_dtype is None:
        return 0.0
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), 0.0)


# ---- helpers -----------------------------------------------------------------------------

def _amp_dtype(cfg: PretrainConfig, device: torch.device):
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _full_state_dicts(model, optimizer, strategy: str, world: int, with_optimizer: bool = True):
    """Full (unsharded) model and optimizer state dicts, on CPU, for rank 0."""
    if strategy == "fsdp2" and world > 1:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd = get_model_state_dict(model, options=options)
        optim_sd = get_optimizer_state_dict(model, optimizer, options=options) if with_optimizer else None
        return model_sd, optim_sd
    model_sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return model_sd, (optimizer.state_dict() if with_optimizer else None)


def _load_optimizer(model, optimizer, state: dict, strategy: str, world: int) -> None:
    if strategy == "fsdp2" and world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)


def _load_model(model, state: dict, strategy: str, world: int) -> None:
    if strategy == "fsdp2" and world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)


def _predictions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true ids at the labelled positions, for dense or sparse logits."""
    selected = labels != IGNORE_INDEX
    targets = labels[selected]
    if logits.shape[:-1] == labels.shape:
        logits = logits[selected]
    return logits.argmax(dim=-1), targets


class _Logger:
    """metrics.jsonl, TensorBoard and wandb on rank 0; nothing elsewhere."""

    def __init__(self, out: Path, cfg: PretrainConfig, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if resume_step >= 0 and self.path.is_file():  # drop what a killed run logged after its checkpoint
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out / "tensorboard"))
            except ImportError:
                print("[aveyb] tensorboard is not installed: no TensorBoard logs", file=sys.stderr)
        if cfg.wandb:
            try:
                import wandb

                self.wandb = wandb.init(project=cfg.wandb, config=cfg.to_dict(), dir=str(out))
            except ImportError:
                print("[aveyb] wandb is not installed: wandb logging off", file=sys.stderr)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and value is not None:
                if self.tb is not None:
                    self.tb.add_scalar(f"{'val' if key.startswith('val_') else 'train'}/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


# ---- the run -----------------------------------------------------------------------------

def pretrain(cfg: PretrainConfig, output_dir: str | Path, resume: bool = False) -> int:
    """Run (or continue) pretraining; returns the process exit code (0 when done)."""
    info = init_distributed(cfg.device)
    try:
        return _pretrain(cfg, Path(output_dir), resume, info)
    finally:
        if info.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        else:
            shutdown()


def _pretrain(cfg: PretrainConfig, out: Path, resume: bool, info: DistInfo) -> int:
    say = (lambda msg: print(f"[aveyb pretrain] {msg}", file=sys.stderr, flush=True)) if info.is_main else (lambda msg: None)
    # ---- everything that can be wrong is checked before training starts ----
    accumulation = cfg.accumulation_steps(info.world_size)
    sources = [validate_source(s) for s in cfg.sources]
    tokenizer = load_tokenizer(cfg.tokenizer)
    ckpt_root = out / "checkpoints"
    latest = ckpt.find_latest(ckpt_root) if ckpt_root.is_dir() else None
    # --resume continues a run and a plain start begins one: neither silently does the other,
    # so a mistyped --output-dir cannot quietly start over
    if latest is not None and not resume:
        raise SetupError(f"{out} already holds checkpoints (latest {latest.name}); pass --resume to continue "
                         f"or choose another --output-dir")
    if resume and latest is None:
        raise SetupError(f"--resume: no checkpoint found in {ckpt_root} (is --output-dir right?); to start a new "
                         "run there, leave out --resume")
    amp_dtype = _amp_dtype(cfg, info.device)
    if info.device.type == "cuda":
        _set_tf32(cfg.tf32)

    _seed_everything(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_sequence_length(model, cfg.seq_len, tokenizer)
    fpt = flops_per_token(model, cfg.mask_rate)
    n_params = sum(p.numel() for p in model.parameters())

    state = ckpt.load_checkpoint(latest, info.rank) if latest is not None else None
    if state is not None and cfg.distributed != "fsdp2":
        model.load_state_dict(state["model"])
    model.to(info.device)
    if cfg.distributed == "fsdp2" or not cfg.compile:
        wrapped = wrap_model(model, info, cfg.distributed)
        if cfg.compile:
            wrapped = torch.compile(wrapped)
    else:  # DDP: compile the module, then wrap it
        wrapped = wrap_model(torch.compile(model), info, cfg.distributed)
    if state is not None and cfg.distributed == "fsdp2":
        _load_model(model, state["model"], cfg.distributed, info.world_size)
    optimizer = build_optimizer(model, cfg)

    masking = MaskingConfig(mask_token_id=tokenizer.mask_token_id, special_ids=tuple(special_token_ids(tokenizer)),
                            vocab_size=len(tokenizer), rate=cfg.mask_rate, strategy=cfg.mask_strategy, seed=cfg.seed)
    val_masking = MaskingConfig(**{**masking.__dict__, "seed": cfg.seed + 7_777})
    packer = SequencePacker(sources, tokenizer, cfg.seq_len, keep_boundaries=cfg.keep_document_boundaries,
                            holdout_every=cfg.holdout_every, role="train")
    val_batches = _validation_batches(cfg, sources, tokenizer, val_masking, info)

    start_step, tokens_seen = 0, 0
    if state is not None:
        _load_optimizer(model, optimizer, state["optimizer"], cfg.distributed, info.world_size)
        trainer_state = state["trainer_state"]
        start_step, tokens_seen = trainer_state["step"], trainer_state["tokens_seen"]
        packer.load_state_dict(trainer_state["data"])
        if state["rng"] is not None:
            ckpt.set_rng_state(state["rng"])
        say(f"resumed from {latest} at step {start_step}")
    del state
    if start_step >= cfg.max_steps:
        say(f"nothing to do: step {start_step} >= max_steps {cfg.max_steps}")
    out.mkdir(parents=True, exist_ok=True)
    logger = _Logger(out, cfg, info.is_main, start_step if latest is not None else -1)
    if info.is_main:
        (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "world_size": info.world_size}, indent=1))
        say(f"{cfg.arch}/{cfg.model_preset}: {n_params / 1e6:.2f}M parameters, vocabulary {model_vocab_size(tokenizer)}, "
            f"{info.world_size} rank(s) on {info.device.type}, {accumulation} micro-batch(es) of "
            f"{cfg.micro_batch_size}×{cfg.seq_len} per rank per step, {cfg.global_batch_tokens} tokens/step, "
            f"precision {'bf16' if amp_dtype else 'fp32'}")

    stop_signal = {"signum": 0}

    def on_signal(signum, frame):
        stop_signal["signum"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    peak = peak_flops(cfg, info.device, amp_dtype)
    autocast = (lambda: torch.autocast(info.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    slices = rank_slice(cfg.global_batch_sequences, cfg.micro_batch_size, info.rank, info.world_size)
    batches = _Prefetcher(packer, slices, masking, cfg.global_batch_sequences, cfg.max_steps - start_step)
    data_state = packer.state_dict()
    progress = _progress(cfg, info, start_step)

    def save(step: int) -> None:
        model_sd, optim_sd = _full_state_dicts(model, optimizer, cfg.distributed, info.world_size)
        ckpt.save_checkpoint(ckpt_root, step, model_state=model_sd, optimizer_state=optim_sd,
                             trainer_state={"tokens_seen": tokens_seen, "data": data_state,
                                            "config": cfg.to_dict()},
                             tokenizer=tokenizer, rank=info.rank, world_size=info.world_size,
                             keep=cfg.keep_checkpoints, model_config=model.config)

    t_log, tokens_at_log = time.perf_counter(), tokens_seen
    try:
        for step in range(start_step, cfg.max_steps):
            lr = cfg.lr * lr_factor(step, cfg.max_steps, cfg.schedule, cfg.warmup_fraction,
                                    cfg.decay_fraction, cfg.min_lr_ratio)
            set_lr(optimizer, lr)
            micro, data_state = batches.get()
            (n_global,) = all_reduce_sum([float(sum(m[3] for m in micro))], info)
            loss_sum = torch.zeros((), dtype=torch.float64, device=info.device)
            model.train()
            for a, (inputs, attn, labels, n_mb) in enumerate(micro):
                last = a == len(micro) - 1
                with _no_sync(wrapped, model, info, cfg.distributed, last):
                    with autocast():
                        output = wrapped(input_ids=inputs.to(info.device, non_blocking=True),
                                         attention_mask=(attn.to(info.device, non_blocking=True)
                                                         if cfg.keep_document_boundaries else None),
                                         labels=labels.to(info.device, non_blocking=True))
                    loss = output.loss.float()
                    (loss * (n_mb * info.world_size / n_global)).backward()
                loss_sum += loss.detach().double() * n_mb
            (total_loss,) = all_reduce_sum([loss_sum.item()], info)
            loss_value = total_loss / n_global
            if not math.isfinite(loss_value):
                where = ckpt.find_latest(ckpt_root)
                raise TrainingError(
                    f"loss is {loss_value} at step {step + 1}: stopping without an optimizer step. "
                    f"The last good checkpoint is {where if where else 'none (no checkpoint was written yet)'}; "
                    f"lower lr, raise warmup or check the data, then --resume.")
            sync_replicated_grads(model, info)
            grad_norm = _clip(model, cfg.grad_clip, info)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += cfg.global_batch_tokens
            done = step + 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
            if done % cfg.log_every == 0 or done == cfg.max_steps:
                now = time.perf_counter()
                tps = (tokens_seen - tokens_at_log) / max(now - t_log, 1e-9)
                t_log, tokens_at_log = now, tokens_seen
                record = {"step": done, "loss": loss_value, "lr": lr, "tokens_per_s": tps,
                          "grad_norm": grad_norm, "tokens": tokens_seen, "epoch": data_state["epoch"]}
                if peak:
                    record["mfu"] = fpt * tps / (peak * info.world_size)
                logger.log(record)
            if val_batches and (done % cfg.eval_every == 0 or done == cfg.max_steps):
                logger.log({"step": done, **_evaluate(wrapped if cfg.distributed == "fsdp2" else model,
                                                      val_batches, info, autocast)})
            signum = int(all_reduce_sum([float(stop_signal["signum"])], info)[0]) if info.enabled \
                else stop_signal["signum"]
            if done % cfg.checkpoint_every == 0 or done == cfg.max_steps or signum:
                save(done)
            if signum:
                say(f"received signal {signum}: checkpoint written at step {done}; continue with --resume")
                return 128 + int(signum)
        _save_final(out / "final", model, optimizer, tokenizer, cfg, info)
        if info.is_main:
            say(f"done: {cfg.max_steps} steps; model in {out / 'final'}; data: {data_state['stats']}")
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if progress is not None:
            progress.close()
        batches.close()
        logger.close()


class _Prefetcher:
    """Builds the next steps' masked micro-batches in a background thread (bounded queue).

    Each item carries the packer's state after its global batch was read, so a checkpoint
    records the position of the last batch trained on, not of the batches read ahead.
    """

    def __init__(self, packer: SequencePacker, slices, masking: MaskingConfig, global_batch: int, steps: int,
                 depth: int = 2):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._args = (packer, slices, masking, global_batch, steps)
        self._thread = threading.Thread(target=self._run, name="aveyb-data", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        packer, slices, masking, global_batch, steps = self._args
        try:
            stream = iter(packer)
            for _ in range(steps):
                first_index = packer.sequences
                block = [next(stream) for _ in range(global_batch)]
                micro = []
                for offsets in slices:
                    ids = torch.from_numpy(np.stack([block[o][0] for o in offsets]))
                    attn = torch.from_numpy(np.stack([block[o][1] for o in offsets]))
                    inputs, labels = mask_batch(ids, attn, [first_index + o for o in offsets], masking)
                    micro.append((inputs, attn, labels, int((labels != IGNORE_INDEX).sum())))
                item = (micro, packer.state_dict())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # handed to the training thread
            self._queue.put(err)

    def get(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _progress(cfg: PretrainConfig, info: DistInfo, start: int):
    if not (cfg.progress_bar and info.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.max_steps, initial=start, desc="pretrain", dynamic_ncols=True, file=sys.stderr)


@contextlib.contextmanager
def _no_sync(wrapped, model, info: DistInfo, strategy: str, last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if not info.enabled or last:
        yield
        return
    if strategy == "fsdp2":
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
        return
    ddp = wrapped if hasattr(wrapped, "no_sync") else getattr(wrapped, "_orig_mod", wrapped)
    with ddp.no_sync():
        yield


def _clip(model, max_norm: float, info: DistInfo) -> float:
    """Global gradient norm, clipped to ``max_norm`` when > 0: one formula for 1 rank, DDP and FSDP2.

    FSDP2's gradients are DTensor shards: their squares are summed locally and then over
    ranks; replicated gradients (plain tensors, e.g. Avey-B's 0-dim ``alpha``) are counted
    once, whereas ``clip_grad_norm_`` on such a mix would count them once per rank.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    sharded = [g.to_local() for g in grads if hasattr(g, "to_local")]
    plain = [g for g in grads if not hasattr(g, "to_local")]
    device = (sharded or plain)[0].device
    total = torch.zeros((), dtype=torch.float32, device=device)
    if sharded:
        total += torch.stack([n.float() for n in torch._foreach_norm(sharded)]).pow(2).sum()
        if info.enabled:
            import torch.distributed as dist

            dist.all_reduce(total, op=dist.ReduceOp.SUM)
    if plain:
        total += torch.stack([n.float().to(device) for n in torch._foreach_norm(plain)]).pow(2).sum()
    norm = total.sqrt()
    if max_norm > 0:
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        local = sharded + plain
        torch._foreach_mul_(local, coef.to(local[0].device))
    return float(norm)


def _validation_batches(cfg: PretrainConfig, sources, tokenizer, masking: MaskingConfig, info: DistInfo):
    """This rank's masked validation micro-batches (the same count on every rank)."""
    if cfg.holdout_every <= 0 or cfg.val_sequences <= 0:
        return []
    packer = SequencePacker(sources, tokenizer, cfg.seq_len, keep_boundaries=cfg.keep_document_boundaries,
                            holdout_every=cfg.holdout_every, role="val", repeat=False)
    seqs = []
    for item in packer:
        seqs.append(item)
        if len(seqs) >= cfg.val_sequences:
            break
    per_rank = len(seqs) // info.world_size
    if per_rank == 0:
        if info.is_main:
            print("[aveyb pretrain] no held-out validation sequences: validation off", file=sys.stderr)
        return []
    mine = list(range(info.rank * per_rank, (info.rank + 1) * per_rank))
    batches = []
    for start in range(0, per_rank, cfg.micro_batch_size):
        idx = mine[start:start + cfg.micro_batch_size]
        ids = torch.from_numpy(np.stack([seqs[i][0] for i in idx]))
        attn = torch.from_numpy(np.stack([seqs[i][1] for i in idx]))
        inputs, labels = mask_batch(ids, attn, idx, masking)
        batches.append((inputs, attn, labels))
    return batches


@torch.no_grad()
def _evaluate(model, batches, info: DistInfo, autocast) -> dict:
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    for inputs, attn, labels in batches:
        labels = labels.to(info.device)
        with autocast():
            output = model(input_ids=inputs.to(info.device), attention_mask=attn.to(info.device), labels=labels)
        n = float((labels != IGNORE_INDEX).sum())
        loss_sum += float(output.loss.float()) * n
        pred, target = _predictions(output.logits, labels)
        correct += float((pred == target).sum())
        count += n
    model.train(was_training)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info)
    return {"val_loss": loss_sum / count, "val_accuracy": correct / count, "val_tokens": int(count)}


def _save_final(path: Path, model, optimizer, tokenizer, cfg: PretrainConfig, info: DistInfo) -> None:
    """``save_pretrained`` + tokenizer: loadable by AutoModelForMaskedLM, AutoTokenizer, fill-mask."""
    model_sd, _ = _full_state_dicts(model, optimizer, cfg.distributed, info.world_size, with_optimizer=False)
    if info.is_main:
        model.save_pretrained(str(path), state_dict=model_sd)
        tokenizer.save_pretrained(str(path))
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
