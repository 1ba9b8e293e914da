"""The kernels' settings (``aveyb.kernels.KernelOptions``): typed, validated, exact by default, and
read from the environment only when asked (``from_env``)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from aveyb.kernels import KernelOptions


def test_defaults_are_the_exact_form():
    """The defaults compute what SPEC.md writes: the exact GELU; every other default only picks
    between kernels that compute the same function."""
    options = KernelOptions()
    assert (options.gelu, options.enricher, options.gemm_tma, options.maxsim_tma, options.autotune,
            options.train_layer, options.compile_layers, options.compile_dynamic) == \
        ("exact", "auto", True, True, True, "auto", True, None)


@pytest.mark.parametrize("field, value, allowed", [
    ("gelu", "erf", "['exact', 'tanh']"),
    ("enricher", "tma-tanh", "['auto', 'ws', 'tma']"),
    ("train_layer", "inductor", "['auto', 'triton', 'compile']"),
    ("gemm_tma", "0", "[True, False]"),
    ("maxsim_tma", 1, "[True, False]"),
    ("autotune", None, "[True, False]"),
    ("compile_layers", "yes", "[True, False]"),
    ("compile_dynamic", "auto", "[None, True, False]"),
])
def test_a_bad_value_names_the_field_and_the_choices(field, value, allowed):
    with pytest.raises(ValueError, match=rf"KernelOptions\.{field}={value!r} is not allowed; choose one of "
                                         + allowed.replace("[", r"\[").replace("]", r"\]")):
        KernelOptions(**{field: value})


def test_ws_needs_the_tanh_gelu():
    """The Gluon enricher computes the tanh-form GELU only: asking for it with the exact GELU is an
    error, not a silent change of numerics."""
    with pytest.raises(ValueError, match="enricher='ws'.*gelu='tanh'"):
        KernelOptions(enricher="ws")
    assert KernelOptions(enricher="ws", gelu="tanh").enricher == "ws"


def test_frozen_and_replace():
    options = KernelOptions()
    with pytest.raises(AttributeError):
        options.gelu = "tanh"
    assert options.replace(gelu="tanh") == KernelOptions(gelu="tanh")
    with pytest.raises(ValueError, match="KernelOptions.train_layer"):
        options.replace(train_layer="eager")


def test_from_env_reads_the_variables_once():
    """from_env maps the AVEYB_* variables onto the fields; the tanh-form kernels' old names imply
    gelu="tanh"; a bad value names the variable."""
    assert KernelOptions.from_env({}) == KernelOptions()
    env = {"AVEYB_ENRICHER": "tma-tanh", "AVEYB_GEMM_TMA": "0", "AVEYB_MAXSIM_TMA": "0", "AVEYB_AUTOTUNE": "0",
           "AVEYB_TRAIN_LAYER": "compile", "AVEYB_COMPILE_LAYERS": "0", "AVEYB_COMPILE_DYNAMIC": "1"}
    assert KernelOptions.from_env(env) == KernelOptions(
        gelu="tanh", enricher="tma", gemm_tma=False, maxsim_tma=False, autotune=False, train_layer="compile",
        compile_layers=False, compile_dynamic=True)
    assert KernelOptions.from_env({"AVEYB_ENRICHER": "ws"}) == KernelOptions(gelu="tanh", enricher="ws")
    assert KernelOptions.from_env({"AVEYB_GELU": "tanh"}).gelu == "tanh"
    with pytest.raises(ValueError, match="AVEYB_ENRICHER='cutlass': expected one of auto, ws, tma, tma-tanh"):
        KernelOptions.from_env({"AVEYB_ENRICHER": "cutlass"})


def test_no_kernel_reads_the_environment():
    """Only options.py (its from_env) may touch os.environ or os.getenv in aveyb.kernels."""
    import aveyb.kernels

    package = pathlib.Path(aveyb.kernels.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "options.py":
            continue
        tree = ast.parse(path.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not names & {"environ", "getenv"}, f"{path.name} reads the environment"
