"""``aveyb export DIR --format onnx --output OUT``: a saved aveyb checkpoint to ONNX.

The class comes from the config's ``architectures`` (``AveyBModel`` or any head); the graph
takes ``input_ids`` and ``attention_mask`` (int64, (batch, sequence), right padding) with
dynamic batch and sequence axes, and returns the head's outputs by name
(``last_hidden_state``, ``logits``, or ``start_logits`` and ``end_logits``). ``OUT`` gets
``model.onnx`` and the checkpoint's config and tokenizer files, so the folder runs with
onnxruntime + tokenizers alone.

Exporter: the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, torch.export), not the
TorchScript one. Avey-B's forward is full of Python decisions on the sequence length (pad the
last split or not, how many MaxSim chunks, fewer splits than k or not). TorchScript tracing
records each of them as a constant for the example's length: the traced graph silently gave
wrong shapes (an ONNX Runtime broadcast error) for any other length. torch.export instead keeps
the length symbolic and refuses, at export time, any branch that would fix it; under
``torch.compiler.is_exporting()`` the ranker takes length-independent forms of those branches
(same math; ``aveyb.model.ranker``), so one graph serves every length and batch size. It is
also the default exporter since torch 2.9 (the TorchScript one is deprecated). It needs
``onnxscript`` (in the ``export`` extra).

The exporter's graph optimizer (onnxscript's, ``optimize=True``) is off: it removes additions
of a tiny constant such as ``+ eps`` with eps = 1e-12, so ``x / (‖x‖ + eps)`` and the RMSNorm
of an all-zero row (padding, the empty slots of an uncompressed window) gave NaN that the
mixers spread to real tokens. ONNX Runtime still applies its own graph optimizations.

The exported ranker computes MaxSim in one chunk (the eager model chunks it to bound memory):
its memory grows as batch · T² (256 MB in fp32 for one 8,192-token row).

After export the graph is checked with ONNX Runtime against eager PyTorch on a right-padded
batch of a size and lengths other than the export example's (``--no-verify`` skips it).
Like ``torch.compile``, the graph skips the model's input checks (ids in range, mask values,
no left padding): callers must pad on the right.

``export_module`` exports a model already in memory (what ``aveyb bench --impls onnxruntime``
times), and ``cpu_session`` opens an ONNX Runtime CPU session with a chosen number of intra-op
threads (README, "CPU serving").
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Outputs of each class's forward, in the order the ONNX graph returns them.
HEAD_OUTPUTS = {
    "AveyBModel": ("last_hidden_state",),
    "AveyBForMaskedLM": ("logits",),
    "AveyBForSequenceClassification": ("logits",),
    "AveyBForTokenClassification": ("logits",),
    "AveyBForQuestionAnswering": ("start_logits", "end_logits"),
}
INPUT_NAMES = ("input_ids", "attention_mask")
ONNX_FILE = "model.onnx"
# Not copied next to the .onnx file: the weights (they are in it) and the remote modeling code.
_SKIPPED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".py", ".onnx", ".data")
_SKIPPED_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def load_for_export(model_dir: str | Path):
    """The checkpoint as the class its config names (``architectures[0]``), fp32, eval, on CPU."""
    import aveyb.model.modeling_aveyb as modeling
    from aveyb.model import AveyBConfig

    config = AveyBConfig.from_pretrained(str(model_dir))
    names = config.architectures or ["AveyBModel"]
    name = names[0]
    if name not in HEAD_OUTPUTS:
        raise ValueError(f"{model_dir}: architectures={names}; ONNX export supports {sorted(HEAD_OUTPUTS)}")
    model = getattr(modeling, name).from_pretrained(str(model_dir), config=config)
    return model.float().eval().to("cpu"), HEAD_OUTPUTS[name]


def onnx_wrapper(model, outputs: tuple[str, ...]):
    """``model`` as a module whose forward(input_ids, attention_mask) returns the named outputs."""
    import torch

    class OnnxWrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return tuple(out[name] for name in outputs)

    return OnnxWrapper().eval()


def example_inputs(config, batch: int = 2, length: int | None = None, lengths=None):
    """A right-padded int64 batch: ids cycle through the vocabulary, row i holds lengths[i] tokens.

    The export example is 2 rows of 2S+3 positions (not a multiple of S), the second one padded."""
    import torch

    split = config.split_size
    length = length or 2 * split + 3
    lengths = list(lengths) if lengths is not None else [length] + [split + 1] * (batch - 1)
    ids = (torch.arange(batch * length, dtype=torch.long).view(batch, length) * 7 + 3) % config.vocab_size
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def export_onnx(model_dir: str | Path, output_dir: str | Path, opset: int | None = None,
                verify: bool = True) -> Path:
    """Export ``model_dir`` to ``output_dir/model.onnx`` and copy its config and tokenizer files."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model, outputs = load_for_export(model_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = export_module(model, outputs, output_dir / ONNX_FILE, opset=opset)
    copy_side_files(model_dir, output_dir)
    if verify:
        error = verify_onnx(model, path, outputs)
        print(f"onnxruntime vs PyTorch (batch 3, lengths {verify_lengths(model.config)}): "
              f"max relative error {error:.2e}")
        if not error < 1e-3:
            raise RuntimeError(f"{path}: ONNX Runtime outputs differ from PyTorch (max relative error {error:.2e})")
    return path


def export_module(model, outputs: tuple[str, ...], path: str | Path, opset: int | None = None) -> Path:
    """Export an in-memory fp32 CPU model (``AveyBModel`` or a head; ``outputs`` from
    :data:`HEAD_OUTPUTS`) to ``path`` with dynamic batch and sequence axes, and check the axes."""
    import torch

    path = Path(path)
    wrapper = onnx_wrapper(model, outputs)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dims = {0: batch, 1: seq}
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    kwargs = {"opset_version": opset} if opset else {}
    with torch.no_grad():
        torch.onnx.export(
            wrapper, example_inputs(model.config), str(path), dynamo=True,
            input_names=list(INPUT_NAMES), output_names=list(outputs),
            dynamic_shapes={"input_ids": dims, "attention_mask": dims},
            external_data=size > (1 << 30),  # protobuf's 2 GB limit: big weights go to model.onnx.data
            optimize=False,  # onnxscript's optimizer drops `x + 1e-12` (eps): 0 / (0 + eps) became NaN
            verbose=False, **kwargs)
    check_dynamic_axes(path)
    return path


def cpu_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (default:
    torch's ``get_num_threads()``, so that ORT and PyTorch rows of a benchmark use as many) and
    one inter-op thread; ORT's full graph optimisation (its default)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def check_dynamic_axes(path: str | Path) -> None:
    """Raise if the exporter fixed the batch or sequence axis of an input (when torch.export
    refuses a symbolic length, torch.onnx falls back to the example's length, with only a warning)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        fixed = [i for i, d in enumerate(dims) if not d.dim_param]
        if fixed:
            shape = [d.dim_param or d.dim_value for d in dims]
            raise RuntimeError(f"{path}: input {value.name} has shape {shape}: the exporter fixed axis "
                               f"{fixed} instead of keeping it dynamic")


def copy_side_files(model_dir: Path, output_dir: Path) -> list[str]:
    """Copy config.json, the tokenizer files and other small top-level files (not weights or code)."""
    copied = []
    for item in sorted(Path(model_dir).iterdir()):
        if not item.is_file() or item.suffix in _SKIPPED_SUFFIXES or item.name in _SKIPPED_NAMES:
            continue
        shutil.copy2(item, output_dir / item.name)
        copied.append(item.name)
    return copied


def verify_lengths(config) -> list[int]:
    split = config.split_size
    return [3 * split + 5, max(1, split // 2), 2 * split]


def verify_onnx(model, path: str | Path, outputs: tuple[str, ...], lengths=None) -> float:
    """Max relative error of ONNX Runtime against ``model`` on real (unpadded) positions:
    max |ort - torch| / max |torch| per output, the worst output."""
    import onnxruntime as ort
    import torch

    lengths = lengths or verify_lengths(model.config)
    ids, mask = example_inputs(model.config, batch=len(lengths), length=max(lengths), lengths=lengths)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(outputs), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, return_dict=True)
    real = None if type(model).__name__ == "AveyBForSequenceClassification" else mask.numpy().astype(bool)
    return max(relative_error(g, ref[name].numpy(), real) for name, g in zip(outputs, got))


def relative_error(got, ref, real=None) -> float:
    """max |got - ref| / max |ref|, over the real positions of per-token outputs (``real``: the
    (B, T) boolean mask) or over everything (``real=None``, e.g. (B, n_labels) logits)."""
    import numpy as np

    if real is not None:
        got, ref = got[real], ref[real]
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a saved aveyb checkpoint (ONNX)")
    parser.add_argument("model_dir", metavar="DIR", help="save_pretrained folder of an aveyb model or head")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="output folder: model.onnx plus the config and tokenizer files")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the ONNX Runtime vs PyTorch check on a padded batch")
    parser.set_defaults(func=_export_command)


def _export_command(args) -> int:
    path = export_onnx(args.model_dir, args.output, opset=args.opset, verify=not args.no_verify)
    print(f"saved {path}")
    return 0
