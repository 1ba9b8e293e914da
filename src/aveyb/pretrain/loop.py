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
from aveyb.engine import (
    adamw,
    amp_dtype,
    autocast,
    lr_factor,
    optimizer_step,
    progress_bar,
    seed_everything,
    set_lr,
)
from aveyb.pretrain import checkpoint as ckpt
from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.distributed import (
    DistInfo,
    all_reduce_sum,
    full_state_dicts,
    init_distributed,
    load_model_state,
    load_optimizer_state,
    shutdown,
    wrap_model,
)

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
    model = build_masked_lm(cfg.arch, cfg.model_preset, vocab, **overrides)
    if cfg.arch == "avey-b":
        model.set_kernel_backend(options=cfg.kernel_options_object())
    return model


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

def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _upgrade_optimizer_state(state: dict, optimizer) -> dict:
    """Give the moments of one-number parameters, saved 0-dim before alpha and tau had shape (1,),
    their parameter's shape (in place). Keys are indices (one process, DDP) or names (FSDP2)."""
    shapes = {key: p.shape for saved, group in zip(state["param_groups"], optimizer.param_groups)
              for key, p in zip(saved["params"], group["params"])}
    for key, entry in state["state"].items():
        if shapes.get(key) == (1,):
            for name, value in entry.items():
                if name != "step" and torch.is_tensor(value) and value.dim() == 0:
                    entry[name] = value.reshape(1)
    return state


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
        return _Run(cfg, Path(output_dir), resume, info).train()
    finally:
        if info.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        else:
            shutdown()


class _Run:
    """One pretraining run in named steps: set-up (everything that can be wrong is checked
    before training starts), resume, the optimizer step, evaluation and checkpoints."""

    def __init__(self, cfg: PretrainConfig, out: Path, resume: bool, info: DistInfo):
        """Set-up: check the inputs and the run folder, build the model, optimizer and data, and
        restore the latest checkpoint with ``resume``."""
        self.cfg, self.out, self.info = cfg, out, info
        self.accumulation = cfg.accumulation_steps(info.world_size)
        self.sources = [validate_source(s) for s in cfg.sources]
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        self.ckpt_root = out / "checkpoints"
        latest = self._checkpoint_to_resume(resume)
        self.amp_dtype = amp_dtype(cfg.precision, info.device)
        if info.device.type == "cuda":
            _set_tf32(cfg.tf32)
        seed_everything(cfg.seed)
        state = ckpt.load_checkpoint(latest, info.rank) if latest is not None else None
        if state is not None:
            from aveyb.model.layers import upgrade_scalar_shapes

            upgrade_scalar_shapes(state["model"])  # a checkpoint from before alpha and tau had shape (1,)
        self._setup_model(state)
        self._setup_data()
        self.step, self.tokens_seen = 0, 0
        if state is not None:
            self._resume(state, latest)
        del state
        if self.step >= cfg.max_steps:
            self.say(f"nothing to do: step {self.step} >= max_steps {cfg.max_steps}")
        self._open_run_folder(resumed=latest is not None)

    def say(self, msg: str) -> None:
        if self.info.is_main:
            print(f"[aveyb pretrain] {msg}", file=sys.stderr, flush=True)

    def autocast(self):
        return autocast(self.cfg.precision, self.info.device)

    # ---- set-up ----------------------------------------------------------------------------
    def _checkpoint_to_resume(self, resume: bool) -> Path | None:
        """The checkpoint to continue from. --resume continues a run and a plain start begins
        one: neither silently does the other, so a mistyped --output-dir cannot quietly start over."""
        latest = ckpt.find_latest(self.ckpt_root) if self.ckpt_root.is_dir() else None
        if latest is not None and not resume:
            raise SetupError(f"{self.out} already holds checkpoints (latest {latest.name}); pass --resume to "
                             f"continue or choose another --output-dir")
        if resume and latest is None:
            raise SetupError(f"--resume: no checkpoint found in {self.ckpt_root} (is --output-dir right?); to "
                             "start a new run there, leave out --resume")
        return latest

    def _setup_model(self, state: dict | None) -> None:
        cfg, info = self.cfg, self.info
        model = build_model(cfg, self.tokenizer)
        check_sequence_length(model, cfg.seq_len, self.tokenizer)
        self.fpt = flops_per_token(model, cfg.mask_rate)
        self.n_params = sum(p.numel() for p in model.parameters())
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
            load_model_state(model, state["model"], cfg.distributed, info)
        self.model, self.wrapped = model, wrapped
        self.optimizer = adamw(model, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                               fused=all(p.is_cuda for p in model.parameters()))

    def _setup_data(self) -> None:
        cfg, tokenizer = self.cfg, self.tokenizer
        self.masking = MaskingConfig(mask_token_id=tokenizer.mask_token_id,
                                     special_ids=tuple(special_token_ids(tokenizer)), vocab_size=len(tokenizer),
                                     rate=cfg.mask_rate, strategy=cfg.mask_strategy, seed=cfg.seed)
        val_masking = MaskingConfig(**{**self.masking.__dict__, "seed": cfg.seed + 7_777})
        self.packer = SequencePacker(self.sources, tokenizer, cfg.seq_len, keep_boundaries=cfg.keep_document_boundaries,
                                     holdout_every=cfg.holdout_every, role="train")
        self.val_batches = _validation_batches(cfg, self.sources, tokenizer, val_masking, self.info)

    def _resume(self, state: dict, path: Path) -> None:
        """Optimizer, step, data position and every RNG state of the checkpoint (the model is loaded
        with the set-up, before or after wrapping as the strategy needs)."""
        optimizer_state = _upgrade_optimizer_state(state["optimizer"], self.optimizer)
        load_optimizer_state(self.model, self.optimizer, optimizer_state, self.cfg.distributed, self.info)
        trainer_state = state["trainer_state"]
        self.step, self.tokens_seen = trainer_state["step"], trainer_state["tokens_seen"]
        self.packer.load_state_dict(trainer_state["data"])
        if state["rng"] is not None:
            ckpt.set_rng_state(state["rng"])
        self.say(f"resumed from {path} at step {self.step}")

    def _open_run_folder(self, resumed: bool) -> None:
        """The metrics log (cut back to the checkpoint when resumed) and the run's config.json."""
        cfg, info, out = self.cfg, self.info, self.out
        out.mkdir(parents=True, exist_ok=True)
        self.logger = _Logger(out, cfg, info.is_main, self.step if resumed else -1)
        if info.is_main:
            (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "world_size": info.world_size}, indent=1))
            self.say(f"{cfg.arch}/{cfg.model_preset}: {self.n_params / 1e6:.2f}M parameters, vocabulary "
                     f"{model_vocab_size(self.tokenizer)}, {info.world_size} rank(s) on {info.device.type}, "
                     f"{self.accumulation} micro-batch(es) of {cfg.micro_batch_size}×{cfg.seq_len} per rank per "
                     f"step, {cfg.global_batch_tokens} tokens/step, precision {'bf16' if self.amp_dtype else 'fp32'}")

    # ---- training --------------------------------------------------------------------------
    def train(self) -> int:
        """Train from the current step to ``max_steps``: 0 when done, 128 + N after signal N."""
        cfg, info = self.cfg, self.info
        stop = {"signum": 0}
        previous = {s: signal.signal(s, lambda signum, frame: stop.update(signum=signum))
                    for s in (signal.SIGTERM, signal.SIGINT)}
        slices = rank_slice(cfg.global_batch_sequences, cfg.micro_batch_size, info.rank, info.world_size)
        batches = _Prefetcher(self.packer, slices, self.masking, cfg.global_batch_sequences, cfg.max_steps - self.step)
        self.data_state = self.packer.state_dict()
        bar = progress_bar(total=cfg.max_steps, initial=self.step, desc="pretrain",
                           enabled=cfg.progress_bar and info.is_main)
        meter = _Throughput(self, peak_flops(cfg, info.device, self.amp_dtype))
        try:
            for step in range(self.step, cfg.max_steps):
                lr = cfg.lr * lr_factor(step, cfg.max_steps, cfg.schedule, cfg.warmup_fraction,
                                        cfg.decay_fraction, cfg.min_lr_ratio)
                set_lr(self.optimizer, lr)
                micro, self.data_state = batches.get()
                loss, grad_norm = self.train_step(step, micro)
                self.step = done = step + 1
                self.tokens_seen += cfg.global_batch_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                if done % cfg.log_every == 0 or done == cfg.max_steps:
                    tps, mfu = meter.read()
                    record = {"step": done, "loss": loss, "lr": lr, "tokens_per_s": tps, "grad_norm": grad_norm,
                              "tokens": self.tokens_seen, "epoch": self.data_state["epoch"]}
                    self.logger.log({**record, "mfu": mfu} if mfu is not None else record)
                if self.val_batches and (done % cfg.eval_every == 0 or done == cfg.max_steps):
                    self.logger.log({"step": done, **self.evaluate()})
                signum = int(all_reduce_sum([float(stop["signum"])], info)[0]) if info.enabled else stop["signum"]
                if done % cfg.checkpoint_every == 0 or done == cfg.max_steps or signum:
                    self.save()
                if signum:
                    self.say(f"received signal {signum}: checkpoint written at step {done}; continue with --resume")
                    return 128 + int(signum)
            self.save_final(self.out / "final")
            self.say(f"done: {cfg.max_steps} steps; model in {self.out / 'final'}; data: {self.data_state['stats']}")
            return 0
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            bar.close()
            batches.close()
            self.logger.close()

    def train_step(self, step: int, micro: list) -> tuple[float, float]:
        """Forward and backward over this rank's micro-batches, then one optimizer step.

        The loss is the mean over every masked token of the global batch: each micro-batch is
        weighted by its count of masked tokens. A non-finite loss stops before the optimizer step.
        """
        cfg, info, model = self.cfg, self.info, self.model
        (n_global,) = all_reduce_sum([float(sum(m[3] for m in micro))], info)
        loss_sum = torch.zeros((), dtype=torch.float64, device=info.device)
        model.train()
        for a, (inputs, attn, labels, n_mb) in enumerate(micro):
            with _no_sync(self.wrapped, model, info, cfg.distributed, last=a == len(micro) - 1):
                with self.autocast():
                    output = self.wrapped(input_ids=inputs.to(info.device, non_blocking=True),
                                          attention_mask=(attn.to(info.device, non_blocking=True)
                                                          if cfg.keep_document_boundaries else None),
                                          labels=labels.to(info.device, non_blocking=True))
                loss = output.loss.float()
                (loss * (n_mb * info.world_size / n_global)).backward()
            loss_sum += loss.detach().double() * n_mb
        (total_loss,) = all_reduce_sum([loss_sum.item()], info)
        loss_value = total_loss / n_global
        if not math.isfinite(loss_value):
            where = ckpt.find_latest(self.ckpt_root)
            raise TrainingError(
                f"loss is {loss_value} at step {step + 1}: stopping without an optimizer step. "
                f"The last good checkpoint is {where if where else 'none (no checkpoint was written yet)'}; "
                f"lower lr, raise warmup or check the data, then --resume.")
        return loss_value, optimizer_step(model, self.optimizer, cfg.grad_clip)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Masked-LM loss and accuracy over the held-out batches of every rank."""
        # DDP's wrapper only syncs gradients, which evaluation has none of; FSDP2 shards the model
        # in place, so there the wrapped module is the model (compiled when compile is on)
        model = self.wrapped if self.cfg.distributed == "fsdp2" else self.model
        was_training = model.training
        model.eval()
        loss_sum, correct, count = 0.0, 0.0, 0.0
        for inputs, attn, labels in self.val_batches:
            labels = labels.to(self.info.device)
            with self.autocast():
                output = model(input_ids=inputs.to(self.info.device), attention_mask=attn.to(self.info.device),
                               labels=labels)
            n = float((labels != IGNORE_INDEX).sum())
            loss_sum += float(output.loss.float()) * n
            pred, target = _predictions(output.logits, labels)
            correct += float((pred == target).sum())
            count += n
        model.train(was_training)
        loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], self.info)
        return {"val_loss": loss_sum / count, "val_accuracy": correct / count, "val_tokens": int(count)}

    # ---- saving ----------------------------------------------------------------------------
    def save(self) -> None:
        """A complete checkpoint of the current step (every rank takes part)."""
        model_sd, optim_sd = full_state_dicts(self.model, self.optimizer, self.cfg.distributed, self.info)
        ckpt.save_checkpoint(self.ckpt_root, self.step, model_state=model_sd, optimizer_state=optim_sd,
                             trainer_state={"tokens_seen": self.tokens_seen, "data": self.data_state,
                                            "config": self.cfg.to_dict()},
                             tokenizer=self.tokenizer, rank=self.info.rank, world_size=self.info.world_size,
                             keep=self.cfg.keep_checkpoints, model_config=self.model.config)

    def save_final(self, path: Path) -> None:
        """``save_pretrained`` + tokenizer: loadable by AutoModelForMaskedLM, AutoTokenizer, fill-mask."""
        model_sd, _ = full_state_dicts(self.model, self.optimizer, self.cfg.distributed, self.info,
                                       with_optimizer=False)
        if self.info.is_main:
            self.model.save_pretrained(str(path), state_dict=model_sd)
            self.tokenizer.save_pretrained(str(path))
        if self.info.enabled:
            import torch.distributed as dist

            dist.barrier()


class _Throughput:
    """Tokens per second (and MFU, when the peak is known) since the last logged step."""

    def __init__(self, run: _Run, peak: float):
        self.run, self.peak = run, peak
        self.time, self.tokens = time.perf_counter(), run.tokens_seen

    def read(self) -> tuple[float, float | None]:
        now, tokens = time.perf_counter(), self.run.tokens_seen
        tps = (tokens - self.tokens) / max(now - self.time, 1e-9)
        self.time, self.tokens = now, tokens
        return tps, (self.run.fpt * tps / (self.peak * self.run.info.world_size) if self.peak else None)


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
