"""TC-LIF (Zhang et al., AAAI 2024) and BRF (Higuchi et al., ICML 2024) on every backend.

Against a transcription, written here, of each authors' step (TC-LIF's
``TCLIFNode.neuronal_charge``/``neuronal_reset``, BRF's ``BRFCell.forward`` with
``brf_update``; float64): identical spikes and membranes, and the gradients of the input
and of every learnable parameter (TC-LIF's ``decay``, BRF's ``omega`` and ``b_offset``),
per layer and per neuron, through the reference loop, the fused C kernels and Triton (its
interpreter without a GPU). gradcheck with a smooth surrogate; streaming in chunks equals
one call; the argument errors; the model zoo's names and their per-neuron parameters.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from neuron_references import compare_with_reference, sigmoid_spike
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError
from spikeflow.models import NEURONS, create_model
from spikeflow.neurons import BRFNode, TCLIFNode
from spikeflow.surrogate import DoubleGaussian, MultiGaussian, Sigmoid
from test_surrogate_gaussian_mixture import BRFDoubleGaussianSpike, TCLIFMultiGaussianSpike

BACKENDS = fused_backends("torch")
F64 = torch.float64


def tclif_authors_loop(x, decay, gamma, theta, detach_reset=False, hard_reset=False,
                       spike=sigmoid_spike):  # fmt: skip
    """The authors' TC-LIF step: charge v1 (dendrite) then v2 (soma), fire on v2, soft
    reset of both (v1 by gamma, v2 by θ) or hard reset of v2 alone (to 0)."""
    v1 = torch.zeros_like(x[0])
    v2 = torch.zeros_like(x[0])
    spikes, somas = [], []
    for x_t in x:
        v1 = v1 - torch.sigmoid(decay[0]) * v2 + x_t
        v2 = v2 + torch.sigmoid(decay[1]) * v1
        s = spike(v2 - theta)
        sd = s.detach() if detach_reset else s
        if hard_reset:
            v2 = (1.0 - sd) * v2
        else:
            v1 = v1 - sd * gamma
            v2 = v2 - sd * theta
        spikes.append(s)
        somas.append(v2)
    return torch.stack(spikes), torch.stack(somas)


def brf_authors_loop(x, omega_raw, b_offset_raw, dt=0.01, theta=1.0, spike=sigmoid_spike):
    """The authors' BRF cell: |omega|, |b_offset|, b = p(omega) - b_offset - q, Euler
    step of the complex membrane from the old (u, v), spike on u - θ - q, q ← 0.9 q + z,
    no reset."""
    omega = omega_raw.abs()
    p_omega = (-1 + torch.sqrt(1 - torch.square(dt * omega))) / dt
    b_offset = b_offset_raw.abs()
    u = torch.zeros_like(x[0])
    v = torch.zeros_like(x[0])
    q = torch.zeros_like(x[0])
    spikes, reals = [], []
    for x_t in x:
        b = p_omega - b_offset - q
        u_ = u + b * u * dt - omega * v * dt + x_t * dt
        v = v + omega * u * dt + b * v * dt
        z = spike(u_ - theta - q)
        q = q * 0.9 + z
        u = u_
        spikes.append(z)
        reals.append(u)
    return torch.stack(spikes), torch.stack(reals)


def _tclif(backend, shape, seed=0, **kw):
    torch.manual_seed(seed)
    node = TCLIFNode(shape, backend=backend, store_v_seq=True, **kw).double()
    with torch.no_grad():
        node.decay.add_(torch.randn_like(node.decay))  # factors away from 0.5
    return node.to(kernel_device(backend))


def _brf(backend, shape, seed=0, **kw):
    torch.manual_seed(seed)
    node = BRFNode(shape, backend=backend, store_v_seq=True, **kw).double()
    return node.to(kernel_device(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [None, 6], ids=["per-layer", "per-neuron"])
@pytest.mark.parametrize(
    "mode", ["soft", "soft-detach", "hard"], ids=["soft", "soft-detach", "hard"]
)
def test_tclif_equals_the_authors_step(backend, shape, mode):
    device = kernel_device(backend)
    kw = {"v_reset": 0.0} if mode == "hard" else {"detach_reset": mode == "soft-detach"}
    node = _tclif(backend, shape, gamma=0.7, **kw)
    torch.manual_seed(1)
    x = (torch.rand(16, 3, 6, dtype=F64, device=device) * 1.2 - 0.3).requires_grad_()
    g = torch.randn(16, 3, 6, dtype=F64, device=device)
    s = node(x)
    got = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), [x, node.decay])
    x_ref = x.detach().clone().requires_grad_()
    decay = node.decay.detach().clone().requires_grad_()
    s_ref, v_ref = tclif_authors_loop(
        x_ref, decay, 0.7, 1.0, detach_reset=mode == "soft-detach", hard_reset=mode == "hard"
    )
    want = torch.autograd.grad((s_ref * g).sum() + v_ref.sum(), [x_ref, decay])
    compare_with_reference(s, node.v_seq, got, s_ref, v_ref, want, ["x", "decay"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [None, 6], ids=["per-layer", "per-neuron"])
@pytest.mark.parametrize("input_scale", [1.0, 100.0])
def test_brf_equals_the_authors_step(backend, shape, input_scale):
    """With ``input_scale`` k: the authors' step on the input k X."""
    device = kernel_device(backend)
    node = _brf(backend, shape, input_scale=input_scale)
    torch.manual_seed(1)
    # the authors' input enters scaled by dt: currents of order 1/dt make it fire
    x = (torch.rand(24, 3, 6, dtype=F64, device=device) * 300 - 120) / input_scale
    x.requires_grad_()
    g = torch.randn(24, 3, 6, dtype=F64, device=device)
    s = node(x)
    params = [node.omega, node.b_offset]
    got = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), [x, *params])
    x_ref = x.detach().clone().requires_grad_()
    p_ref = [p.detach().clone().requires_grad_() for p in params]
    s_ref, v_ref = brf_authors_loop(x_ref * input_scale, *p_ref)
    want = torch.autograd.grad((s_ref * g).sum() + v_ref.sum(), [x_ref, *p_ref])
    compare_with_reference(s, node.v_seq, got, s_ref, v_ref, want, ["x", "omega", "b_offset"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["tclif", "brf"])
def test_the_authors_surrogate_gives_their_gradients(backend, kind):
    """TC-LIF with MultiGaussian, BRF with DoubleGaussian, both strict_firing (the
    authors fire on >): the authors' step with their own spike function, exactly. The
    TC-LIF's first input puts somas exactly on the threshold (where >= would fire and
    they do not)."""
    device = kernel_device(backend)
    torch.manual_seed(1)
    if kind == "tclif":
        node = _tclif(backend, 6, gamma=0.5, surrogate_function=MultiGaussian(),
                      strict_firing=True)  # fmt: skip
        with torch.no_grad():
            node.decay.zero_()  # both factors 0.5
        x = torch.randint(-2, 8, (16, 3, 6), dtype=F64, device=device) / 8
        x[0, 0] = 2.0  # the first soma is 0.5 x = 1: exactly at the threshold
        params, spike = [node.decay], TCLIFMultiGaussianSpike.apply
    else:
        node = _brf(backend, 6, input_scale=100.0, surrogate_function=DoubleGaussian(),
                    strict_firing=True)  # fmt: skip
        x = (torch.rand(24, 3, 6, dtype=F64, device=device) * 300 - 120) / 100
        params, spike = [node.omega, node.b_offset], BRFDoubleGaussianSpike.apply
    x.requires_grad_()
    g = torch.randn(x.shape, dtype=F64, device=device)
    s = node(x)
    got = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), [x, *params])
    x_ref = x.detach().clone().requires_grad_()
    p_ref = [p.detach().clone().requires_grad_() for p in params]
    if kind == "tclif":
        s_ref, v_ref = tclif_authors_loop(x_ref, *p_ref, 0.5, 1.0, spike=spike)
        assert (v_ref == 1.0).any()  # at the threshold: no spike, as theirs
    else:
        s_ref, v_ref = brf_authors_loop(x_ref * 100, *p_ref, spike=spike)
    want = torch.autograd.grad((s_ref * g).sum() + v_ref.sum(), [x_ref, *p_ref])
    names = ["x", "decay"] if kind == "tclif" else ["x", "omega", "b_offset"]
    compare_with_reference(s, node.v_seq, got, s_ref, v_ref, want, names)


def test_brf_at_the_divergence_boundary_neither_grows_nor_decays():
    # b_offset = 0, no input after a kick, no spike: |z| is kept by the Euler step.
    node = BRFNode(omega_range=(30.0, 30.0), b_offset_range=(0.0, 0.0), v_threshold=1e9,
                   backend="torch", store_v_seq=True).double()  # fmt: skip
    x = torch.zeros(200, 1, 1, dtype=F64)
    x[0] = 10.0  # z = dt x = 0.1 after the first step
    with F.streaming(node):
        node(x)
        w = node.state["w"]
    v = node.v_seq[-1]
    torch.testing.assert_close(torch.sqrt(v**2 + w**2), torch.full_like(v, 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["tclif", "tclif_hard", "brf"])
def test_gradcheck_float64(kind, backend):
    """gradcheck of spikes and membrane (input, threshold) with a smooth surrogate."""
    device = kernel_device(backend)
    kw = dict(surrogate_function=Sigmoid(alpha=2.0, spiking=False),
              v_threshold=torch.tensor([0.9, 1.1]), learnable_threshold=True)  # fmt: skip
    if kind == "brf":
        node, scale = _brf(backend, 2, **kw), 150.0
    else:
        node, scale = _tclif(backend, 2, v_reset=0.0 if kind == "tclif_hard" else None, **kw), 2.0
    node = node.to(device)
    x = ((torch.rand(5, 1, 2, dtype=F64, device=device) - 0.2) * scale).requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()

    def through(name):
        def f(x, theta):
            node.backend = name
            s = torch.func.functional_call(node, {"v_threshold": theta}, (x,))
            return torch.cat([s, node.v_seq])

        return f

    gradcheck_backend(backend, through(backend), (x, theta), through("torch"))


@pytest.mark.parametrize("kind", ["tclif", "brf"])
def test_chunked_streaming_equals_one_call(kind):
    make = _tclif if kind == "tclif" else _brf
    scale = 2.0 if kind == "tclif" else 300.0
    node = make("cpu", 4)
    x = torch.rand(12, 2, 4, dtype=F64) * scale
    whole = node(x)
    with F.streaming(node):
        parts = torch.cat([node(c) for c in x.split([5, 7])])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: TCLIFNode(gamma=float("nan")), "gamma"),
        (lambda: TCLIFNode(shape=0), "shape"),
        (lambda: BRFNode(dt=0.0), "dt"),
        (lambda: BRFNode(q_decay=1.5), "q_decay"),
        (lambda: BRFNode(input_scale=0.0), "input_scale"),
        (lambda: BRFNode(omega_range=(5.0, 200.0)), "1/dt"),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ConfigurationError, match=match):
        build()


@pytest.mark.parametrize("name", ["v_reset", "detach_reset"])
def test_brf_takes_no_reset_arguments(name):
    # not in its signature, so the zoo's models do not pass their defaults to it
    with pytest.raises(TypeError, match=name):
        BRFNode(**{name: None})
    net = create_model("plif_nmnist", channels=4, neuron="brf")  # passes detach_reset=True
    assert net(torch.rand(2, 1, 2, 34, 34)).shape == (2, 1, 10)


@pytest.mark.parametrize("name, cls, count", [("tc_lif", TCLIFNode, 2), ("brf", BRFNode, 2)])
def test_the_zoo_names_give_per_neuron_parameters_in_sequence_models(name, cls, count):
    assert NEURONS[name] is cls
    net = create_model("recurrent_lif_seq", in_channels=1, input_mode="pixels", hidden=8,
                       neuron=name)  # fmt: skip
    cells = [m for m in net.modules() if isinstance(m, cls)]
    assert len(cells) == 2
    assert all(p.shape[-1] == 8 for c in cells for p in c.parameters())
    assert sum(p.numel() for c in cells for p in c.parameters()) == 2 * count * 8
    out = net(torch.rand(64, 3, 1, 8, 8))
    assert out.shape[-1] == 10


def _as_if_trained(net):
    """Move every neuron parameter off its initial value (TC-LIF's starts at 0)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.endswith("weight") and not name.endswith("bias"):
                p.add_(0.02 + 0.05 * torch.rand(p.shape))


@pytest.mark.parametrize("name", ["adlif", "tc_lif", "brf"])
def test_a_per_layer_checkpoint_loads_into_the_per_neuron_sequence_model(name):
    # recurrent_lif_seq now passes shape=hidden; a checkpoint saved before (one value per
    # layer, as shape=None builds) loads and gives the same outputs
    kwargs = dict(in_channels=1, input_mode="pixels", input_size=4, hidden=8, neuron=name)
    gain = {"input_scale": 100.0} if name == "brf" else {}
    torch.manual_seed(0)
    per_layer = create_model("recurrent_lif_seq", **kwargs, neuron_kwargs={"shape": None, **gain})
    per_neuron = create_model("recurrent_lif_seq", **kwargs, neuron_kwargs=gain)
    _as_if_trained(per_layer)
    old = per_layer.state_dict()
    assert any(v.dim() == 0 or v.shape == (2,) for k, v in old.items() if "sub_module" in k)
    per_neuron.load_state_dict(old)
    x = torch.rand(16, 3, 1, 4, 4)
    assert torch.equal(per_neuron(x), per_layer(x))
    cells = [m for m in per_neuron.modules() if isinstance(m, NEURONS[name])]
    assert all(p.shape[-1] == 8 for c in cells for p in c.parameters())
    new = per_neuron.state_dict()
    for key, value in old.items():  # each neuron holds its layer's value
        assert torch.equal(new[key], value.unsqueeze(-1).expand_as(new[key]) if
                           value.shape != new[key].shape else value), key  # fmt: skip


@pytest.mark.parametrize("cls", [TCLIFNode, BRFNode])
def test_a_per_layer_state_loads_into_per_channel_conv_neurons(cls):
    # [T, B, C, H, W] with shape=(C, 1, 1): each channel's value is the layer's
    torch.manual_seed(1)
    layer = cls(step_mode="m")
    channel = cls(shape=(4, 1, 1), step_mode="m")
    _as_if_trained(layer)
    channel.load_state_dict(layer.state_dict())
    x = torch.randn(6, 2, 4, 5, 5) * 150.0
    assert torch.equal(channel(x), layer(x))
    with pytest.raises(RuntimeError, match="size mismatch"):  # a wrong width still fails
        cls(shape=(4, 1, 1), step_mode="m").load_state_dict(cls(shape=(3, 1, 1)).state_dict())


@pytest.mark.parametrize("name", ["adlif", "tc_lif"])
def test_an_old_runs_optimizer_state_resumes_on_per_neuron_parameters(name):
    # --resume of a run saved per layer: Adam's moments are broadcast as the weights are
    from spikeflow.training.trainer_checkpoints import expand_optimizer_state

    kwargs = dict(in_channels=1, input_mode="pixels", input_size=4, hidden=8, neuron=name)
    x = torch.rand(16, 3, 1, 4, 4)
    torch.manual_seed(0)
    old = create_model("recurrent_lif_seq", **kwargs, neuron_kwargs={"shape": None})
    old_opt = torch.optim.Adam(old.parameters(), lr=1e-2)
    old(x).square().sum().backward()
    old_opt.step()
    saved_model, saved_opt = old.state_dict(), old_opt.state_dict()
    new = create_model("recurrent_lif_seq", **kwargs)
    new.load_state_dict(saved_model)
    opt = torch.optim.Adam(new.parameters(), lr=1e-2)
    opt.load_state_dict(saved_opt)
    expand_optimizer_state(opt, new, saved_model)
    for (key, p), (_, q) in zip(new.named_parameters(), old.named_parameters(), strict=True):
        state, before = opt.state[p], old_opt.state[q]
        assert torch.equal(state["step"], before["step"])
        for moment in ("exp_avg", "exp_avg_sq"):
            expected = before[moment]
            if expected.shape != p.shape:  # a per-layer value, one copy per neuron
                expected = expected.unsqueeze(-1).expand(p.shape)
            assert torch.equal(state[moment], expected), (key, moment)
    new(x).square().sum().backward()
    opt.step()  # failed before: "output with shape [] doesn't match the broadcast shape [8]"
    assert all(torch.isfinite(p).all() for p in new.parameters())
