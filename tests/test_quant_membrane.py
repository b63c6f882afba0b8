"""Membrane quantization (spikeflow.quant.membrane): the grid, the straight-through
gradient, every backend against a direct loop of the equations, and the errors."""

from __future__ import annotations

import io

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import neurons, quant
from spikeflow.errors import ConfigurationError
from spikeflow.quant.membrane import MembraneQuantizer
from spikeflow.surrogate import Sigmoid

BACKENDS = ["torch", *fused_backends()]


def direct_quantized_lif(x, tau, theta, step, lo, hi, v_reset):
    """LIF (decay_input) with the charged membrane rounded half up to k·step, k in
    [lo, hi], written out step by step (straight-through rounding, spikeflow's default
    sigmoid surrogate): spikes and the membrane after each reset."""
    spike = Sigmoid()
    v = torch.zeros_like(x[0]) if v_reset is None else torch.full_like(x[0], v_reset)
    spikes, vs = [], []
    for x_t in x:
        h = v + (x_t - (v - (0.0 if v_reset is None else v_reset))) / tau
        q = torch.clamp(torch.floor(h.detach() / step + 0.5), lo, hi) * step
        h = q + (h - h.detach())
        s = spike(h - theta)
        v = h - theta * s if v_reset is None else h * (1 - s) + v_reset * s
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


def test_quantize_membrane_rounds_half_up_saturates_and_passes_the_gradient():
    step = 0.25
    h = torch.tensor([0.125, -0.125, 0.1, 0.374, 0.375, -0.376, 5.0, -5.0, 0.0],
                     dtype=torch.float64, requires_grad=True)  # fmt: skip
    q = quant.quantize_membrane(h, membrane_step=step, membrane_min=-8.0, membrane_max=7.0)
    expected = [0.25, 0.0, 0.0, 0.25, 0.5, -0.5, 1.75, -2.0, 0.0]
    assert q.tolist() == expected
    q.sum().backward()
    assert h.grad.tolist() == [1.0] * 9  # straight through, saturated values too


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [0.0, None, -0.5])
def test_quantized_lif_equals_the_direct_loop(backend, v_reset):
    device = kernel_device(backend)
    torch.manual_seed(0)
    x = (torch.rand(12, 3, 37, dtype=torch.float64) * 2.2 - 0.3).to(device)
    node = neurons.LIFNode(tau=1.7, v_reset=v_reset, backend=backend, store_v_seq=True)
    node = node.double().to(device)
    quant.apply_membrane_quantization(node, bits=5)  # Δ = 1/8, levels -16 ... 15
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    spikes = node(x1)
    want_s, want_v = direct_quantized_lif(x2, 1.7, 1.0, 0.125, -16, 15, v_reset)
    assert torch.equal(spikes, want_s)
    assert torch.equal(node.v_seq, want_v)
    g = torch.randn_like(x)
    (spikes * g).sum().backward()
    (want_s * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)
    assert x1.grad.abs().sum() > 0
    assert 0.02 < spikes.mean() < 0.8
    levels = node.membrane_quantizer.integers(node.v_seq, 1.0)
    assert torch.equal(levels.double() * 0.125, node.v_seq)


def _compare(make, backend, x, atol):
    """Spikes identical and float64 gradients (input and parameters) close between the
    reference loop and a fused backend, both quantized alike."""
    ref = make("torch")
    quant.apply_membrane_quantization(ref, bits=7, fraction_bits=4)
    xr = x.clone().requires_grad_()
    yr = ref(xr)
    assert 0.05 < yr.mean() < 0.8, yr.mean()
    g = torch.randn_like(yr)
    gr = torch.autograd.grad((yr * g).sum(), [xr, *ref.parameters()])
    device = kernel_device(backend)
    fused = make(backend)
    quant.apply_membrane_quantization(fused, bits=7, fraction_bits=4)
    fused.load_state_dict(ref.state_dict())
    fused = fused.to(device)
    xf = x.to(device).clone().requires_grad_()
    yf = fused(xf)
    assert torch.equal(yr, yf.cpu())
    gf = torch.autograd.grad((yf * g.to(device)).sum(), [xf, *fused.parameters()])
    assert len(gf) == len(gr)
    for a, b in zip(gr, gf):
        torch.testing.assert_close(a, b.cpu(), atol=atol, rtol=1e-7)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's masked-off lanes
@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize(
    "kind",
    ["plif_learnable_threshold", "cuba", "alif", "per_channel", "detach_reset", "adlif"],
)
def test_fused_kernels_equal_the_reference_loop_when_quantized(kind, backend):
    torch.manual_seed(1)
    x = torch.rand(9, 2, 4, 3, 3, dtype=torch.float64) * 2.6 - 0.2
    sg = Sigmoid(alpha=2.0)

    def make(backend):
        if kind == "plif_learnable_threshold":
            node = neurons.PLIFNode(init_tau=1.8, learnable_threshold=True, backend=backend,
                                    surrogate_function=sg)  # fmt: skip
        elif kind == "cuba":
            node = neurons.CubaLIFNode(tau_syn=1.5, tau_mem=2.5, backend=backend,
                                       surrogate_function=sg)  # fmt: skip
        elif kind == "alif":
            node = neurons.ALIFNode(tau=2.0, tau_adapt=5.0, beta=0.3, v_reset=None,
                                    backend=backend, surrogate_function=sg)  # fmt: skip
        elif kind == "per_channel":
            theta = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64).view(4, 1, 1)
            node = neurons.LIFNode(tau=1.5, v_threshold=theta, v_reset=None, backend=backend,
                                   surrogate_function=sg)  # fmt: skip
        elif kind == "detach_reset":
            node = neurons.LIFNode(tau=1.5, detach_reset=True, backend=backend,
                                   surrogate_function=sg)  # fmt: skip
        else:
            torch.manual_seed(5)
            node = neurons.AdLIFNode(shape=(4, 3, 3), backend=backend, surrogate_function=sg)
        return node.double()

    _compare(make, backend, x * (8 if kind == "adlif" else 1), atol=1e-9)


def test_per_channel_thresholds_get_per_channel_grids():
    theta = torch.tensor([0.5, 1.0, 0.75]).view(3, 1)
    node = neurons.IFNode(v_threshold=theta, v_reset=None, store_v_seq=True)
    quant.apply_membrane_quantization(node, bits=6, fraction_bits=3)
    torch.manual_seed(0)
    node(torch.rand(10, 2, 3, 5) * 0.3)
    step = theta / 8
    levels = node.v_seq / step
    assert torch.equal(levels, levels.round())
    last = node.v_seq[:, :, 2] / 0.0625  # the first channel's step does not fit the last
    assert not torch.equal(last, last.round())


def test_learnable_threshold_moves_the_grid_and_gets_its_gradient():
    node = neurons.LIFNode(tau=2.0, learnable_threshold=True, v_threshold=0.75, store_v_seq=True)
    quant.apply_membrane_quantization(node, bits=6, fraction_bits=2)
    with torch.no_grad():
        node.v_threshold.fill_(1.25)
    torch.manual_seed(0)
    spikes = node(torch.rand(8, 4, 6) * 2)
    levels = node.v_seq / (1.25 / 4)
    assert torch.equal(levels, levels.round())
    spikes.sum().backward()
    assert node.v_threshold.grad is not None and node.v_threshold.grad != 0


def test_fixed_step_for_a_threshold_and_reset_in_membrane_units():
    node = neurons.LIFNode(tau=4.0, v_threshold=30.0, v_reset=-65.0, store_v_seq=True)
    quant.apply_membrane_quantization(node, bits=10, step=0.5)
    torch.manual_seed(0)
    spikes = node(torch.rand(50, 2, 8) * 240 - 40)
    assert spikes.sum() > 0
    levels = node.v_seq / 0.5
    assert torch.equal(levels, levels.round())
    assert node.v_seq.min() >= -256 and node.v_seq.max() <= 255.5


def test_streaming_single_steps_equal_the_sequence():
    torch.manual_seed(0)
    x = torch.rand(15, 3, 11)
    seq = neurons.LIFNode(tau=2.0)
    quant.apply_membrane_quantization(seq, bits=4)
    step = neurons.LIFNode(tau=2.0, step_mode="s")
    quant.apply_membrane_quantization(step, bits=4)
    from spikeflow import functional

    with functional.streaming(step):
        out = torch.stack([step(x_t) for x_t in x])
    assert torch.equal(out, seq(x))


def test_few_bits_change_the_spikes_and_removal_restores_them():
    torch.manual_seed(0)
    x = torch.rand(20, 4, 64) * 3
    plain = neurons.LIFNode(tau=3.0)
    node = neurons.LIFNode(tau=3.0)
    names = quant.apply_membrane_quantization(node, bits=3)
    assert names == ["LIFNode"]
    assert not torch.equal(node(x), plain(x))  # 3 bits: Δ = θ/2
    assert quant.remove_membrane_quantization(node) == ["LIFNode"]
    assert torch.equal(node(x), plain(x))


def test_model_quantization_names_every_neuron_and_keeps_weights():
    from torch import nn

    model = nn.Sequential(nn.Linear(5, 6), neurons.LIFNode(), nn.Linear(6, 2), neurons.IFNode())
    names = quant.apply_membrane_quantization(model, bits=8)
    assert names == ["1", "3"]
    assert [k for k in model.state_dict() if "membrane" in k] == [
        "1.membrane_quantizer.settings",
        "3.membrane_quantizer.settings",
    ]


def test_state_dict_of_other_settings_is_refused_on_load():
    a, b, c = neurons.LIFNode(), neurons.LIFNode(), neurons.LIFNode()
    quant.apply_membrane_quantization(a, bits=8)
    quant.apply_membrane_quantization(b, bits=6)
    quant.apply_membrane_quantization(c, bits=8)
    with pytest.raises(RuntimeError, match=r"8 bits, fraction_bits=6.*6 bits, fraction_bits=4"):
        b.load_state_dict(a.state_dict())
    buffer = io.BytesIO()
    torch.save(a.half().state_dict(), buffer)  # the settings are integers: .half() keeps them
    buffer.seek(0)
    c.load_state_dict(torch.load(buffer, weights_only=True))
    d = neurons.LIFNode()
    quant.apply_membrane_quantization(d, step=0.125, bits=8)
    with pytest.raises(RuntimeError, match=r"step=0\.125"):
        d.load_state_dict(c.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, "bits must be an integer from 2 to 24"),
        ({"bits": 25}, "bits must be an integer from 2 to 24"),
        ({"bits": 8.0}, "bits must be an integer"),
        ({"bits": True}, "bits must be an integer"),
        ({"bits": 8, "fraction_bits": 7}, "fraction_bits must be an integer from 0 to bits - 2"),
        ({"bits": 8, "fraction_bits": -1}, "fraction_bits must be"),
        ({"bits": 8, "fraction_bits": True}, "fraction_bits must be an integer"),  # not 1
        ({"bits": 8, "fraction_bits": 2, "step": 0.5}, "not both"),
        ({"bits": 8, "step": 0.0}, "step must be a positive finite number"),
        ({"bits": 8, "step": float("nan")}, "step must be a positive finite number"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        MembraneQuantizer(**kwargs)


def test_neurons_off_the_grid_are_refused_by_name():
    from torch import nn

    model = nn.Sequential(nn.Linear(3, 3), neurons.LIFNode(v_reset=-0.3))
    with pytest.raises(ConfigurationError, match=r"of 1: v_reset=-0.3 is not a level"):
        quant.apply_membrane_quantization(model, bits=4)
    assert model[1]._modules.get("membrane_quantizer") is None  # nothing applied
    with pytest.raises(ConfigurationError, match="whole number of steps"):
        quant.apply_membrane_quantization(neurons.LIFNode(v_threshold=1.1), step=0.25)
    learnable = neurons.LIFNode(v_reset=-0.5, learnable_threshold=True)
    with pytest.raises(ConfigurationError, match="learnable threshold the grid moves"):
        quant.apply_membrane_quantization(learnable, bits=8)
    with pytest.raises(ConfigurationError, match="learnable threshold leaves a fixed step"):
        quant.apply_membrane_quantization(neurons.LIFNode(learnable_threshold=True), step=0.5)
    with pytest.raises(ConfigurationError, match="threshold must be positive"):
        quant.apply_membrane_quantization(neurons.IFNode(v_threshold=-1.0, v_reset=-2.0))
    with pytest.raises(ConfigurationError, match="has no spiking neuron with a membrane"):
        quant.apply_membrane_quantization(nn.Sequential(nn.Linear(2, 2), neurons.PSN(4)))
    node = neurons.LIFNode()
    quant.apply_membrane_quantization(node)
    with pytest.raises(ConfigurationError, match="quantized already"):
        quant.apply_membrane_quantization(node)


def test_compiled_quantized_neuron_equals_eager():
    torch.manual_seed(0)
    x = torch.rand(10, 4, 33) * 1.5
    node = neurons.LIFNode(tau=2.0)
    quant.apply_membrane_quantization(node, bits=5)
    eager = node(x)
    compiled = torch.compile(node, fullgraph=True)
    assert torch.equal(compiled(x), eager)


def test_nir_export_refuses_quantized_membranes():
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from torch import nn

    from spikeflow import layers
    from spikeflow.interop import export_to_nir

    net = nn.Sequential(layers.Linear(6, 4), neurons.LIFNode())
    quant.apply_membrane_quantization(net, bits=8)
    with pytest.raises(ConfigurationError, match="membranes of 1 are quantized"):
        export_to_nir(net, torch.zeros(2, 1, 6))
    quant.remove_membrane_quantization(net)
    export_to_nir(net, torch.zeros(2, 1, 6))


def test_a_membrane_quantized_run_trains_resumes_exactly_and_evaluates(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")
    from spikeflow.cli import main
    from spikeflow.training import load_checkpoint
    from train_runs import check_resume_is_exact

    check_resume_is_exact(tmp_path, membrane_bits=4, weight_bits=4)
    full = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    assert any(key.endswith("membrane_quantizer.settings") for key in full)
    assert main(["eval", "--checkpoint", str(tmp_path / "full" / "best.pt"), "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    bad = ["train", "--membrane-bits", "1", "--output-dir", str(tmp_path / "x")]
    assert main(bad) == 2
    assert "bits must be an integer from 2 to 24" in capsys.readouterr().err
    bad = ["train", "--membrane-fraction-bits", "3", "--output-dir", str(tmp_path / "y")]
    assert main(bad) == 2
    assert "needs membrane quantization: add --membrane-bits" in capsys.readouterr().err


def test_compiled_before_any_eager_call_and_inside_a_recurrent_layer():
    # A charge no earlier call has quantized: the wrapper is made while Dynamo traces.
    class Fresh(neurons.BaseNode):
        @staticmethod
        def charge(x, v):
            return v + 0.75 * x

    from spikeflow import functional, layers

    torch.manual_seed(0)
    x = torch.rand(10, 4, 33) * 1.5
    node = Fresh(v_reset=None)
    quant.apply_membrane_quantization(node, bits=5)
    compiled = torch.compile(node, fullgraph=True)(x)
    assert torch.equal(compiled, node(x))
    # The reference step a container runs under torch.compile, after a dict mutation.
    rec = layers.Recurrent(neurons.LIFNode(step_mode="s"), 33)
    quant.apply_membrane_quantization(rec, bits=5)
    eager = rec(x)
    functional.reset_net(rec)
    assert torch.equal(torch.compile(rec, fullgraph=True)(x), eager)


class _UpdateNamedLikeTheGrid(neurons.BaseNode):
    @staticmethod
    def charge(x, v, a):
        return v + x

    @staticmethod
    def update(h, s, a, *, membrane_step):
        return a * 0.5 + membrane_step * s

    def neuron_params(self):
        return {"membrane_step": 0.8}

    def initial_values(self):
        return {**super().initial_values(), "a": 0.0}


def test_a_parameter_named_like_the_grid_is_refused_when_applied():
    node = _UpdateNamedLikeTheGrid()
    match = r"of _UpdateNamedLikeTheGrid: .*\['membrane_step'\]"
    with pytest.raises(ConfigurationError, match=match):
        quant.apply_membrane_quantization(node)
    assert node._modules.get("membrane_quantizer") is None


def test_a_charge_whose_signature_changes_in_place_is_declared_again():
    def charge(x, v, *, a):
        return v + a * x

    def charge2(x, v, *, a, b):
        return v + a * x + b

    class User(neurons.BaseNode):
        def declaration(self):
            return neurons.declare(charge, None, "User")

        def neuron_params(self):
            return {"a": 0.5, "b": 0.25}

    node = User(backend="torch")
    quant.apply_membrane_quantization(node, bits=8)
    x = torch.full((4, 1, 1), 0.5)
    assert node(x).flatten().tolist() == [0, 0, 0, 1]
    charge.__code__ = charge2.__code__  # what IPython's autoreload does
    assert node(x).flatten().tolist() == [0, 1, 0, 1]


def test_integers_recover_the_levels_of_a_24_bit_register_in_float32():
    torch.manual_seed(0)
    quantizer = MembraneQuantizer(24)
    theta = torch.tensor(0.3)
    step = theta / 2**22
    h = (torch.rand(200000, dtype=torch.float64) * 1.2 - 0.6).float()  # [-2θ, 2θ)
    level = torch.floor(h / step + 0.5).clamp(quantizer.min_level, quantizer.max_level)
    v = quantizer(h, theta)
    assert torch.equal(quantizer.integers(v, theta), level.to(torch.int32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infinite_charge_saturates_the_register(backend):
    device = kernel_device(backend)
    node = neurons.IFNode(v_reset=None, backend=backend, store_v_seq=True).to(device)
    quant.apply_membrane_quantization(node, bits=8)  # levels -2 ... 127/64
    x = torch.tensor([[[float("inf"), -float("inf"), 0.3]]] + [[[0.3, 0.3, 0.3]]] * 2)
    spikes = node(x.to(device)).cpu()
    assert spikes[:, 0, 0].tolist() == [1, 1, 0]
    assert node.v_seq[0, 0].tolist() == [127 / 64 - 1, -2.0, 0.296875]
    assert not node.v_seq.isnan().any()


def test_a_register_wider_than_a_half_precision_membrane_is_refused():
    from torch import nn

    from spikeflow import layers

    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(8, 16), neurons.LIFNode(store_v_seq=True))
    quant.apply_membrane_quantization(net, bits=12)
    match = r"LIFNode: a membrane register of 12 bits does not fit a torch\.bfloat16 membrane"
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        pytest.raises(ConfigurationError, match=match),
    ):
        net(torch.rand(6, 4, 8))
    quant.remove_membrane_quantization(net)
    quant.apply_membrane_quantization(net, bits=8)  # the levels k/64 of a bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(6, 4, 8))
    v = net[1].v_seq
    assert v.dtype == torch.bfloat16
    assert torch.equal(v.double() * 64, (v.double() * 64).round())


def test_a_reset_below_the_register_is_refused_as_such():
    with pytest.raises(ConfigurationError, match=r"v_reset=-2.25 is below the register's lowest"):
        quant.apply_membrane_quantization(neurons.LIFNode(v_reset=-2.25), bits=4)
    quant.apply_membrane_quantization(neurons.LIFNode(v_reset=-2.0), bits=4)  # the lowest
