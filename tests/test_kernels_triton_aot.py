"""The GPU flavour of the Triton kernels compiles for a real GPU (sm_90), without one.

The interpreter (tests/conftest.py) runs the kernels' numerics on the CPU but never sees
what only the GPU compiler sees: libdevice calls, IEEE division, dtypes of pointers,
the forward's launch without floating-point contraction. Here Triton compiles them
ahead of time with its bundled ptxas, in a child process with the interpreter off.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import run_compiler_child
from spikeflow.kernels.triton_backend import triton_available

pytestmark = pytest.mark.skipif(
    not triton_available(), reason="triton (the 'triton' extra) is not installed"
)

CHILD = textwrap.dedent(
    """
    import json, re, sys, torch
    sys.path.insert(0, TESTS)
    from sample_neurons import (AllOpsIF, BooleanArithmetic, ConstantBase, RefractoryFlag,
                                ScalarTrace, TorchStyleIF)
    from spikeflow.kernels import triton_backend
    from spikeflow.kernels.triton_aot import compile_for_gpu
    from spikeflow.neurons import (ALIFNode, BaseNode, ComplementaryLIFNode, CubaLIFNode,
                                   EIFNode, GatedLIFNode, IFNode, IzhikevichNode,
                                   LIFNode, ParametricLIFNode, RAFNode, TernaryLIFNode)
    from spikeflow.quant import apply_membrane_quantization
    from spikeflow.surrogate import ATan, PiecewiseQuadratic

    def quantized(node):  # the membrane rounded in the charge (spikeflow.quant)
        apply_membrane_quantization(node, bits=8)
        return node

    class SmoothIF(BaseNode):
        @staticmethod
        def charge(x, v, *, a):
            return v + torch.tanh(x) / a + torch.sigmoid(v) * 0.1

        def neuron_params(self):
            return {"a": 3.0}

    class Capped(BaseNode):  # infinite constants
        @staticmethod
        def charge(x, v):
            h = torch.clamp(v + x, -float("inf"), 3.0)
            floor = torch.full_like(h, -float("inf"))
            return torch.where(h > 2.5, h * 0.5, torch.maximum(h, floor))

    cases = {
        "lif_f32": (LIFNode(tau=3.0), torch.float32),
        "lif_hard_f64": (LIFNode(tau=2.0, v_reset=0.0, decay_input=False), torch.float64),
        # No libdevice call (whose float64 code has FMAs of its own) in either kernel.
        "lif_pq_f64": (LIFNode(surrogate_function=PiecewiseQuadratic()), torch.float64),
        "plif_bf16": (ParametricLIFNode(surrogate_function=ATan()), torch.bfloat16),
        "if_theta_f16": (IFNode(v_threshold=torch.tensor([0.5, 1.0, 1.5, 2.0]),
                                learnable_threshold=True), torch.float16),
        "izhikevich_f32": (IzhikevichNode(), torch.float32),
        "eif_f32": (EIFNode(), torch.float32),
        "alif_f32": (ALIFNode(), torch.float32),
        "cuba_lif_f32": (CubaLIFNode(), torch.float32),
        "clif_f32": (ComplementaryLIFNode(), torch.float32),  # reset_membrane
        "ternary_f32": (TernaryLIFNode(v_reset=0.2), torch.float32),  # a declared fire rule
        "raf_f32": (RAFNode(), torch.float32),
        "glif_f32": (GatedLIFNode(6, 4), torch.float32),  # per-channel, a threshold tensor
        "user_f32": (SmoothIF(), torch.float32),
        "all_ops_f32": (AllOpsIF(), torch.float32),
        "all_ops_f64": (AllOpsIF(), torch.float64),
        # Special-cased exponents, & | ~ ^, tensor methods, NaN-propagating max/min.
        "torch_style_f32": (TorchStyleIF(), torch.float32),
        "torch_style_f64": (TorchStyleIF(), torch.float64),
        "lif_v_seq_f32": (LIFNode(store_v_seq=True), torch.float32),
        "capped_inf_f32": (Capped(), torch.float32),
        # Once printed with float32 literals or scalars that Triton could not compile:
        # a constant base (libdevice.pow), a state from scalars alone, a boolean divided.
        "const_base_f64": (ConstantBase(), torch.float64),
        "scalar_trace_f32": (ScalarTrace(), torch.float32),
        "scalar_trace_f64": (ScalarTrace(), torch.float64),
        "boolean_f32": (BooleanArithmetic(), torch.float32),
        "boolean_f16": (BooleanArithmetic(), torch.float16),
        "refractory_where_f64": (RefractoryFlag(), torch.float64),
        "lif_quantized_f32": (quantized(LIFNode(tau=3.0)), torch.float32),
        "cuba_quantized_f64": (quantized(CubaLIFNode(surrogate_function=PiecewiseQuadratic())),
                               torch.float64),  # no libdevice call (see lif_pq_f64)
        # The control: compiled as if launched with contraction on.
        "plif_f32_fused": (ParametricLIFNode(), torch.float32),
        "izhikevich_f64_fused": (IzhikevichNode(), torch.float64),
    }
    out = {}
    for name, (node, dtype) in cases.items():
        triton_backend.FP_FUSION = name.endswith("_fused")
        k = compile_for_gpu(node, torch.rand(6, 3, 4).to(dtype))
        fwd, bwd = k.forward.asm["ptx"], k.backward.asm["ptx"]
        out[name] = {
            "cubin": [len(k.forward.asm["cubin"]), len(k.backward.asm["cubin"])],
            "fwd_fma": len(re.findall(r"\\bfma\\.rn\\.f(32|64)\\b", fwd)),
            "bwd_fma": len(re.findall(r"\\bfma\\.rn\\.f(32|64)\\b", bwd)),
            "fwd_div_approx": len(re.findall(r"\\bdiv\\.(full|approx)\\.f32\\b", fwd)),
            "fwd_div_rn": len(re.findall(r"\\bdiv\\.rn\\.f32\\b", fwd)),
            "libdevice": "libdevice." in k.source,
            "gvrec": "GVREC" in k.source,
            "floor": "tl.floor(" in k.source,
            "target": k.forward.metadata.target.arch,
        }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def compiled() -> dict:
    return run_compiler_child(CHILD)


def test_every_kernel_compiles_to_sm90_machine_code(compiled):
    assert len(compiled) == 30
    for name, info in compiled.items():
        assert info["target"] == 90, name
        assert min(info["cubin"]) > 1000, name
    # The backward that takes the recorded membrane's gradient is among them.
    assert compiled["lif_v_seq_f32"]["gvrec"] and not compiled["lif_f32"]["gvrec"]


def test_kernels_round_every_operation_like_the_reference(compiled):
    """No contraction into FMA in either kernel (the backward recomputes the forward's
    spikes from the saved state), and no approximate division in forwards whose charge
    is plain arithmetic."""
    for name in ("lif_f32", "lif_pq_f64", "plif_bf16", "if_theta_f16", "izhikevich_f32",
                 "alif_f32", "cuba_lif_f32", "raf_f32", "glif_f32", "ternary_f32"):  # fmt: skip
        assert compiled[name]["fwd_fma"] == 0, name
        assert compiled[name]["bwd_fma"] == 0, name
        assert compiled[name]["fwd_div_approx"] == 0, name
    # The pattern does find the FMAs that contraction makes, in float32 and float64.
    for name in ("plif_f32_fused", "izhikevich_f64_fused"):
        assert compiled[name]["fwd_fma"] > 0 and compiled[name]["bwd_fma"] > 0, name


def test_quantized_membranes_compile_with_their_rounding(compiled):
    assert compiled["lif_quantized_f32"]["floor"] and compiled["cuba_quantized_f64"]["floor"]
    assert not compiled["lif_f32"]["floor"]
    for name in ("lif_quantized_f32", "cuba_quantized_f64"):
        assert compiled[name]["fwd_fma"] == 0 and compiled[name]["bwd_fma"] == 0, name


def test_transcendental_charges_call_libdevice_with_ieee_division(compiled):
    for name in ("eif_f32", "user_f32", "all_ops_f32", "all_ops_f64", "torch_style_f32",
                 "torch_style_f64", "clif_f32"):  # fmt: skip
        assert compiled[name]["libdevice"], name
        assert compiled[name]["fwd_div_approx"] == 0, name
    assert compiled["user_f32"]["fwd_div_rn"] > 0  # tanh(x) / a: IEEE division


def test_interpreter_must_be_off():
    from spikeflow.errors import ConfigurationError
    from spikeflow.kernels.triton_aot import compile_for_gpu
    from spikeflow.kernels.triton_backend import interpreting
    from spikeflow.neurons import LIFNode

    if not interpreting():
        pytest.skip("this process runs Triton compiled (a GPU is present)")
    import torch

    with pytest.raises(ConfigurationError, match="unset TRITON_INTERPRET"):
        compile_for_gpu(LIFNode(), torch.rand(2, 3))
