"""Throughput, latency and peak memory of encoders, for inference and for a training step.

Method (``docs/benchmark.md`` says it in prose):

* inputs are random token ids (``torch.randint`` over the vocabulary, fixed seed), never all equal;
* inference: the encoder alone (no LM head), ``torch.inference_mode``, weights in bf16 (or the
  ``dtype`` asked for); train step: masked-LM forward with loss on 20% of positions, backward,
  AdamW step and ``zero_grad``, fp32 weights under bf16 autocast; logits over every position
  (dense), or with ``sparse_prediction`` only at the labelled ones for our Avey-B models (the same
  loss; the official-style model stays dense, as the official code is);
* each measurement: ``warmup`` untimed calls (compilation, autotuning, allocator growth), then
  timed calls between CUDA events, one event pair per call, until ``repeats`` calls or
  ``min_time`` seconds have passed (at least 2 calls); the median is reported;
* peak memory: ``torch.cuda.max_memory_allocated`` over the timed calls after a reset, weights and
  optimiser state included;
* ``tokens_per_s = batch * seq_len / median``; ``latency_ms`` is the median time of one call.

A measurement that runs out of memory is recorded with ``status="oom"``; any other failure with
``status="error"`` and its message (the CLI then exits non-zero).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from aveyb.provenance import git_commit

AVEY_IMPLS = ("fused", "fused-graphs", "reference", "official-style", "cpu-fast", "compiled", "int8", "onnxruntime")
# CPU inference paths of the reference model (inference mode, fp32): the layers chunk by chunk
# in reused buffers (aveyb.serving.CPUEncoder), Inductor with frozen weights
# (aveyb.serving.compile_for_cpu), int8 dynamic quantisation of the enricher and fuser, run
# chunked as cpu-fast (aveyb.quantize, opt-in: changes the numbers), ONNX Runtime on the exported
# graph (aveyb.export).
CPU_IMPLS = ("cpu-fast", "compiled", "int8", "onnxruntime")
BASELINE_IMPLS = ("sdpa", "flash", "eager")


@dataclass
class Measurement:
    model: str
    impl: str
    mode: str
    batch: int
    seq_len: int
    tokens_per_s: float | None = None
    latency_ms: float | None = None
    peak_mem_gb: float | None = None
    gpu: str = ""
    commit: str = ""
    status: str = "ok"
    repeats: int = 0
    times_ms: list = field(default_factory=list)
    note: str = ""
    kernel_configs: dict = field(default_factory=dict)  # fused Avey-B: what the autotuner chose in this process

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def device_name(device: torch.device) -> str:
    """The GPU's name, or for a CPU its model, torch's thread count and vector ISA, e.g.
    ``cpu: AMD EPYC 9454 (2 threads, AVX512)``: a CPU number means little without them."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"


def cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def random_ids(batch: int, length: int, vocab_size: int, device, seed: int = 0) -> torch.Tensor:
    """Uniform random ids in [0, vocab); the generator is seeded so every model sees the same input."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, length), generator=gen)
    return ids.to(device)


# ---- model construction ------------------------------------------------------------------------
def build_model(model: str, impl: str, preset: str, vocab_size: int, device, dtype, max_len: int,
                sparse_prediction: bool = False):
    """The masked-LM module of one (model, impl), built directly on ``device`` in ``dtype``.

    Avey-B: "fused" (Triton kernels), "fused-graphs" (the same, replayed as CUDA graphs: inference
    only), "reference" (plain PyTorch), "official-style"
    (:class:`~aveyb.bench.official_style.OfficialStyleAveyB`, same weights). Baselines: "sdpa",
    "flash" (FlashAttention 2, where ``flash_attn`` is installed) or "eager" attention.
    """
    from transformers import AutoModelForMaskedLM

    import aveyb  # noqa: F401  registers the Auto classes
    from aveyb.architectures import build_config

    device = torch.device(device)
    if model == "avey-b":
        if impl not in AVEY_IMPLS:
            raise ValueError(f"Avey-B impl {impl!r}; choose one of {AVEY_IMPLS}")
        if impl in CPU_IMPLS and (device.type != "cpu" or dtype != torch.float32):
            raise NotImplementedError(f"{impl} is a CPU fp32 inference path (--device cpu --dtype fp32)")
        backend = "triton" if impl.startswith("fused") else "torch"
        # Our masked-LM head can compute logits only at labelled positions (the same loss); the
        # official-style model keeps the official dense head.
        config = build_config("avey-b", preset, vocab_size, kernel_backend=backend,
                              sparse_prediction=sparse_prediction and impl != "official-style")
        with device:
            mlm = AutoModelForMaskedLM.from_config(config)
        mlm = mlm.to(device=device, dtype=dtype)
        if impl.startswith("fused"):  # the kernels' settings: the AVEYB_* variables, read once here
            from aveyb.kernels import KernelOptions

            mlm.set_kernel_backend(options=KernelOptions.from_env())
        if impl == "official-style":
            from aveyb.bench.official_style import OfficialStyleAveyB

            return OfficialStyleAveyB.from_aveyb(mlm, compile=device.type == "cuda")
        if impl in CPU_IMPLS:
            return cpu_fast_encoder(mlm.eval().model, impl)
        return mlm
    if impl not in BASELINE_IMPLS:
        raise ValueError(f"baseline impl {impl!r}; choose one of {BASELINE_IMPLS}")
    attn = {"sdpa": "sdpa", "flash": "flash_attention_2", "eager": "eager"}[impl]
    if attn == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            raise ModuleNotFoundError("flash_attn is not installed")
    positions = max(max_len + 2, 512)  # absolute-position models need a table as long as the input
    config = build_config(model, preset, vocab_size, max_position_embeddings=positions)
    with device:
        try:
            mlm = AutoModelForMaskedLM.from_config(config, attn_implementation=attn)
        except (ValueError, TypeError):
            config._attn_implementation = attn
            mlm = AutoModelForMaskedLM.from_config(config)
    return mlm.to(device=device, dtype=dtype)


class CPUFastEncoder(torch.nn.Module):
    """One of the CPU inference paths (``CPU_IMPLS``) of an fp32 encoder, beside that encoder:
    ``self(ids)`` is the fast path's last hidden state, ``self.reference`` the plain eager model
    (kept until :meth:`drop_reference`, to check the fast path against it on the bench's input)."""

    def __init__(self, impl: str, fast, reference, note: str = ""):
        super().__init__()
        self.impl, self.fast, self.note = impl, fast, note
        self.reference = [reference]  # a list: not a submodule (eval()/train() leave it alone)
        self.config = reference.config

    def forward(self, ids):
        if self.impl == "onnxruntime":
            feed = {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy()}
            return torch.from_numpy(self.fast.run(["last_hidden_state"], feed)[0])
        out = self.fast(input_ids=ids)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def drop_reference(self) -> None:
        self.reference.clear()

    def vs_reference(self, ids) -> float:
        """‖fast − reference‖ / ‖reference‖ on ``ids``."""
        with torch.inference_mode():
            got = self(ids).float()
            ref = self.reference[0](input_ids=ids).last_hidden_state.float()
        return float((got - ref).norm() / ref.norm())


def cpu_fast_encoder(encoder, impl: str) -> CPUFastEncoder:
    """``encoder`` (an fp32 ``AveyBModel`` on the CPU) through the CPU path ``impl``."""
    from aveyb.serving import DEFAULT_CHUNK_ROWS, CPUEncoder, compile_for_cpu

    if impl == "cpu-fast":
        return CPUFastEncoder(impl, CPUEncoder(encoder), encoder,
                              f"aveyb.serving.CPUEncoder (chunks of {DEFAULT_CHUNK_ROWS} rows, reused buffers)")
    if impl == "compiled":
        return CPUFastEncoder(impl, compile_for_cpu(encoder), encoder, "torch.compile (inductor, freezing)")
    if impl == "int8":
        from aveyb.quantize import quantize_dynamic_int8

        return CPUFastEncoder(impl, CPUEncoder(quantize_dynamic_int8(encoder)), encoder,
                              f"int8 dynamic enricher + fuser (opt-in approximation), CPUEncoder chunks of "
                              f"{DEFAULT_CHUNK_ROWS} rows")
    if impl == "onnxruntime":
        import tempfile
        from pathlib import Path

        import onnxruntime

        from aveyb.export import cpu_session, export_module

        with tempfile.TemporaryDirectory() as tmp:
            path = export_module(encoder, ("last_hidden_state",), Path(tmp) / "model.onnx")
            session = cpu_session(path)  # the graph is read into the session; the file can go
        threads = session.get_session_options().intra_op_num_threads
        return CPUFastEncoder(impl, session, encoder,
                              f"onnxruntime {onnxruntime.__version__} (intra-op threads {threads})")
    raise ValueError(f"CPU impl {impl!r}; choose one of {CPU_IMPLS}")


def _encoder_call(module):
    """ids -> last hidden state, for our models and transformers ones (encoder only, no head)."""
    from aveyb.bench.official_style import OfficialStyleAveyB

    if isinstance(module, (OfficialStyleAveyB, CPUFastEncoder)):
        return module
    base = module.base_model

    def call(ids):
        return base(input_ids=ids, return_dict=True).last_hidden_state

    return call


# ---- timing --------------------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, warmup: int, repeats: int, min_time: float) -> tuple[list[float], float]:
    """Per-call times (ms) of ``fn()`` after ``warmup`` calls, and the peak memory (GB) while timing."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start_all < min_time):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    return times, peak


class Bench:
    """Builds each (model, impl, mode) once and measures it at every length asked for."""

    def __init__(self, *, preset="base", vocab_size=50368, device=None, warmup=2, repeats=10, min_time=1.0,
                 dtype=torch.bfloat16, seed=0, sparse_prediction=False):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.preset, self.vocab_size, self.dtype, self.seed = preset, vocab_size, dtype, seed
        self.warmup, self.repeats, self.min_time = warmup, repeats, min_time
        self.sparse_prediction = sparse_prediction
        self.gpu = device_name(self.device)
        self.commit = git_commit(short=True) or "unknown"

    def run(self, model: str, impl: str, mode: str, batch: int, lengths: list[int], deadline: float | None = None):
        """Yield one :class:`Measurement` per length (mode "inference", "train" or "ranker")."""
        records = [Measurement(model, impl, mode, batch, n, gpu=self.gpu, commit=self.commit) for n in lengths]
        module = optimizer = None
        try:
            module, optimizer, sparse = self.build(model, impl, mode, max(lengths))
            if model == "avey-b" and impl.startswith("fused"):
                err = fused_vs_reference(module, self.device)
                from aveyb.kernels.enricher import enricher_mode

                options = module.kernel_options
                for rec in records:
                    rec.note = f"fused vs reference rel. err {err:.2e} (padded batch, T=1000)"
                    rec.add_note(f"gelu {options.gelu}")
                    if mode == "inference":
                        rec.add_note(f"enricher {enricher_mode(rec.batch * rec.seq_len, options)}")
                    else:
                        rec.add_note(f"train layer {options.train_layer}")
            if isinstance(module, CPUFastEncoder):
                first = random_ids(records[0].batch, records[0].seq_len, self.vocab_size, self.device, self.seed)
                err = module.vs_reference(first)
                module.drop_reference()
                for rec in records:
                    rec.note = module.note
                    rec.add_note(f"vs reference rel. err {err:.2e} (T={records[0].seq_len}, bench input)")
            if sparse:
                for rec in records:
                    rec.add_note("sparse prediction (logits at labelled positions)")
        except Exception as err:  # noqa: BLE001  recorded for every length
            status = "skipped" if isinstance(err, (ModuleNotFoundError, NotImplementedError)) else "error"
            for rec in records:
                rec.status, rec.note = status, f"build: {type(err).__name__}: {err}"[:300]
                yield rec
            return
        try:
            for rec in records:
                if deadline is not None and time.monotonic() > deadline:
                    rec.status, rec.note = "skipped", "time budget spent"
                else:
                    self._measure(rec, module, optimizer)
                yield rec
                if rec.status == "oom":  # longer inputs would only fail again
                    for later in records[records.index(rec) + 1:]:
                        later.status, later.note = "oom", f"skipped after OOM at {rec.seq_len}"
                        yield later
                    return
        finally:
            del module, optimizer
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def build(self, model: str, impl: str, mode: str, max_len: int):
        """(module, optimizer or None, sparse) as :meth:`run` measures them: fp32 weights and the
        benchmark's AdamW for ``mode="train"``, else weights in ``dtype`` in eval mode; sparse
        prediction (if asked for) only for our own Avey-B train steps."""
        weights_dtype = torch.float32 if mode == "train" else self.dtype
        sparse = self.sparse_prediction and mode == "train" and model == "avey-b" and impl != "official-style"
        module = build_model(model, impl, self.preset, self.vocab_size, self.device, weights_dtype, max_len,
                             sparse_prediction=sparse)
        optimizer = None
        if mode == "train":
            module.train()
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, betas=(0.95, 0.95), eps=1e-18,
                                          weight_decay=0.01, fused=self.device.type == "cuda")
        else:
            module.eval()
        return module, optimizer, sparse

    def _measure(self, rec: Measurement, module, optimizer) -> None:
        try:
            fn = self._step(rec, module, optimizer)
            times, peak = time_calls(fn, self.device, self.warmup, self.repeats, self.min_time)
            median = statistics.median(times)
            rec.latency_ms = median
            rec.tokens_per_s = rec.batch * rec.seq_len / (median / 1e3)
            rec.peak_mem_gb = peak
            if rec.impl == "fused-graphs" and self.device.type == "cuda":
                # Replays allocate nothing: the graphs' memory is their pool, reserved at capture.
                rec.peak_mem_gb = torch.cuda.max_memory_reserved(self.device) / 1e9
                rec.add_note("peak_mem_gb = max reserved (graph pool)")
            rec.repeats = len(times)
            rec.times_ms = [round(t, 4) for t in times]
            if rec.model == "avey-b" and rec.impl.startswith("fused"):
                from aveyb.kernels.tuning import chosen_configs

                rec.kernel_configs = chosen_configs()
        except torch.cuda.OutOfMemoryError as err:
            rec.status, rec.note = "oom", str(err).splitlines()[0][:200]
        except (NotImplementedError, ModuleNotFoundError) as err:
            rec.status, rec.note = "skipped", f"{type(err).__name__}: {err}"[:300]
        except Exception as err:  # noqa: BLE001  recorded, and the CLI exits non-zero
            rec.status, rec.note = "error", f"{type(err).__name__}: {err}"[:300]
        finally:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _step(self, rec: Measurement, module, optimizer):
        ids = random_ids(rec.batch, rec.seq_len, self.vocab_size, self.device, self.seed)
        if rec.mode == "ranker":
            return _ranker_call(module, ids)
        if rec.impl == "fused-graphs" and rec.mode != "inference":
            raise NotImplementedError("fused-graphs is an inference path (CUDA-graph replay)")
        if rec.impl in CPU_IMPLS and rec.mode != "inference":
            raise NotImplementedError(f"{rec.impl} is an inference path")
        if rec.mode == "inference":
            if rec.impl == "fused-graphs":
                from aveyb.kernels.graphs import GraphedEncoder

                call = GraphedEncoder(module)
            else:
                call = _encoder_call(module)

            def fn():
                with torch.inference_mode():
                    return call(ids)
            return fn
        if rec.mode != "train":
            raise ValueError(f"mode {rec.mode!r}")
        gen = torch.Generator(device="cpu").manual_seed(self.seed + 1)
        shape = (rec.batch, rec.seq_len)
        labels = torch.where(torch.rand(shape, generator=gen) < 0.2,
                             torch.randint(0, self.vocab_size, shape, generator=gen),
                             torch.full(shape, -100)).to(self.device)
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

        def fn():
            with autocast:
                loss = module(input_ids=ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return fn


def fused_vs_reference(module, device) -> float:
    """‖fused − reference‖ / ‖reference‖ of this very model (its dtype, the autotuned kernels) on a
    padded batch of 2 × 1000 random ids: the bench checks what it times."""
    config = module.config
    ids = random_ids(2, 1000, config.vocab_size, device, seed=123)
    mask = torch.ones_like(ids)
    mask[1, 600:] = 0
    backend = config.kernel_backend
    with torch.no_grad():
        fused = module.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        try:
            module.set_kernel_backend("reference")  # the modules call a backend chosen once
            ref = module.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        finally:
            module.set_kernel_backend(backend)
    return float((fused - ref).norm() / ref.norm())


def _ranker_call(module, ids):
    """The ranker alone (embedding lookup included), as in the quoted "ranker share"."""
    from aveyb.bench.official_style import OfficialStyleAveyB

    if isinstance(module, OfficialStyleAveyB):
        def fn():
            with torch.inference_mode():
                return module.rank(module.embed(ids))
        return fn
    if getattr(module.config, "model_type", "") != "aveyb":
        raise NotImplementedError("the ranker is Avey-B's")
    encoder = module.base_model

    def fn():  # the ranker module calls its backend's rank op
        with torch.inference_mode():
            return encoder.ranker(encoder.embed(ids), None)

    return fn


def default_lengths() -> list[int]:
    return [128, 512, 2048, 8192, 32768, 65536, 98304, 131072]


def format_rate(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value / 1e6:.3f}M"
