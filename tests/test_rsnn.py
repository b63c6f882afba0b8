"""The adaptive LIF of Bittar & Garner (AdLIFNode), the recurrent layer
(layers.Recurrent) and their network (model ``rsnn``).

AdLIF on every backend against a hand-written loop of the paper's equations (the
authors' ``_adlif_cell`` restated: spikes, and float64 gradients of the input and the
four per-neuron parameters through a boxcar surrogate), gradcheck with a smooth
surrogate, the clamp to the paper's ranges, chunked streaming; the recurrent layer
against a direct loop (masked diagonal, orthogonal init); the network's layers, its
variants and a short training run; the errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import NeuronFactory, create_model
from spikeflow.models.rsnn import RSNN
from spikeflow.neurons import AdLIFNode, LIFNode
from spikeflow.surrogate import Rect, Sigmoid
from spikeflow.training.monitors import record_spikes

BACKENDS = fused_backends("torch")
F64 = torch.float64


class _Boxcar(torch.autograd.Function):
    """Θ(z > 0) with gradient 1 on |z| < 0.5 (the authors' SpikeFunctionBoxcar)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * (z.abs() < 0.5).to(g.dtype)


def _paper_loop(x, alpha, beta, a, b, theta=1.0):
    """Bittar & Garner's adLIF recurrence with zero initial states."""
    u = torch.zeros_like(x[0])
    w = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        w = beta * w + a * u + b * s
        u = alpha * (u - theta * s) + (1 - alpha) * (x_t - w)
        s = _Boxcar.apply(u - theta)
        out.append(s)
    return torch.stack(out)


def _adlif(backend: str, n: int = 6, **kw) -> AdLIFNode:
    torch.manual_seed(3)
    return AdLIFNode(
        n, backend=backend, strict_firing=True, surrogate_function=Rect(alpha=1.0), **kw
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_adlif_equals_the_papers_equations(backend):
    device = kernel_device(backend)
    node = _adlif(backend).double().to(device)
    torch.manual_seed(0)
    x = (torch.randn(40, 3, 6, dtype=F64, device=device) * 1.5 + 1.0).requires_grad_()
    g = torch.randn(40, 3, 6, dtype=F64, device=device)
    s = node(x)
    params = [node.alpha, node.beta, node.a, node.b]
    got = torch.autograd.grad((s * g).sum(), [x, *params])
    x_ref = x.detach().clone().requires_grad_()
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    s_ref = _paper_loop(x_ref, *ref_params)
    want = torch.autograd.grad((s_ref * g).sum(), [x_ref, *ref_params])
    assert torch.equal(s, s_ref)
    assert 0.05 < s.mean().item() < 0.6  # spikes and silences: both paths are exercised
    for name, a, b in zip(["x", "alpha", "beta", "a", "b"], got, want):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=name)


def test_adlif_parameters_are_drawn_in_the_papers_ranges_and_clamped():
    node = AdLIFNode(1000)
    ranges = {
        "alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
        "beta": (math.exp(-1 / 30), math.exp(-1 / 120)),
        "a": (-1.0, 1.0),
        "b": (0.0, 2.0),
    }
    for name, (low, high) in ranges.items():
        p = getattr(node, name)
        assert p.shape == (1000,) and low <= p.min() and p.max() <= high, name
        assert p.max() - p.min() > 0.9 * (high - low), name  # drawn over the whole range
    # A parameter pushed out of its range acts at the bound and gets no gradient.
    node = AdLIFNode(2, backend="torch")
    with torch.no_grad():
        node.b.copy_(torch.tensor([5.0, 1.0]))
    params = node.neuron_params()
    assert params["b"].tolist() == [2.0, 1.0]
    node(torch.full((40, 1, 2), 4.0)).sum().backward()
    assert node.b.grad[0] == 0 and node.b.grad[1] != 0


def test_adlif_per_layer_and_per_channel_shapes():
    assert AdLIFNode().alpha.shape == ()
    node = AdLIFNode((4, 1, 1), backend="torch")
    y = node(torch.rand(5, 2, 4, 3, 3) * 3)
    assert y.shape == (5, 2, 4, 3, 3)
    y.sum().backward()
    assert node.alpha.grad.shape == (4, 1, 1)
    for bad in (0, (3, 0), "4", (2.5,), True):
        with pytest.raises(ConfigurationError, match="shape"):
            AdLIFNode(bad)
    with pytest.raises(ConfigurationError, match="tau_range"):
        AdLIFNode(tau_range=(25.0, 5.0))
    with pytest.raises(ConfigurationError, match="tau_adapt_range"):
        AdLIFNode(tau_adapt_range=(0.0, 5.0))
    with pytest.raises(ConfigurationError, match="a_range"):
        AdLIFNode(a_range=(1.0,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adlif_gradcheck_float64(backend):
    device = kernel_device(backend)
    node = AdLIFNode(
        2, backend=backend, surrogate_function=Sigmoid(alpha=2.0, spiking=False)
    ).double().to(device)  # fmt: skip
    x = (torch.rand(6, 1, 2, dtype=F64, device=device) * 3).requires_grad_()
    names = ["alpha", "beta", "a", "b"]
    values = [getattr(node, n).detach().clone().requires_grad_() for n in names]

    def through(name):
        def f(x, *ps):
            node.backend = name
            return torch.func.functional_call(node, dict(zip(names, ps)), (x,))

        return f

    gradcheck_backend(backend, through(backend), (x, *values), through("torch"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adlif_chunked_streaming_equals_one_call(backend):
    device = kernel_device(backend)
    node = _adlif(backend).double().to(device)
    x = torch.randn(15, 2, 6, dtype=F64, device=device) * 1.5 + 1.0
    whole = node(x)
    with F.streaming(node):
        parts = torch.cat([node(c) for c in x.split([4, 1, 10])])
        assert sorted(node.state) == ["v", "w"]
    assert torch.equal(parts, whole)


# -- the recurrent layer ---------------------------------------------------------------


def test_recurrent_layer_equals_a_direct_loop():
    torch.manual_seed(0)
    layer = layers.Recurrent(LIFNode(tau=2.0, step_mode="s"), 5, bias=True,
                             self_connections=False).double()  # fmt: skip
    with torch.no_grad():
        layer.recurrent.bias.uniform_(-0.3, 0.3)
    x = (torch.rand(12, 3, 5, dtype=F64) * 2).requires_grad_()
    y = layer(x)
    w = layer.recurrent.weight * (1 - torch.eye(5, dtype=F64))
    ref_node = LIFNode(tau=2.0, step_mode="s").double()
    s, out = torch.zeros(3, 5, dtype=F64), []
    with F.streaming(ref_node):
        for x_t in x:
            s = ref_node(x_t + s @ w.T + layer.recurrent.bias)
            out.append(s)
    assert torch.equal(y, torch.stack(out)) and 0.1 < y.mean() < 0.9
    y.sum().backward()
    assert layer.recurrent.weight.grad.diagonal().abs().sum() == 0
    assert layer.recurrent.weight.grad.abs().sum() > 0


def test_radlif_layer_equals_the_papers_loop_with_parameters_computed_once(monkeypatch):
    # Inside a container's call the neuron computes (clamps, expands) its parameters
    # at the first step only; their gradients then come through one reduction.
    torch.manual_seed(0)
    node = AdLIFNode(6, step_mode="s", strict_firing=True, surrogate_function=Rect(alpha=1.0))
    layer = layers.Recurrent(node, 6, self_connections=False).double()
    calls = []
    original = AdLIFNode.neuron_params
    monkeypatch.setattr(AdLIFNode, "neuron_params", lambda self: calls.append(1) or original(self))
    x = (torch.randn(30, 3, 6, dtype=F64) * 1.5 + 1.5).requires_grad_()
    g = torch.randn(30, 3, 6, dtype=F64)
    s = layer(x)
    assert len(calls) == 1 and node._step_params is None  # once, and not kept after
    params = [node.alpha, node.beta, node.a, node.b, layer.recurrent.weight]
    got = torch.autograd.grad((s * g).sum(), [x, *params])

    x_ref = x.detach().clone().requires_grad_()
    ref = [p.detach().clone().requires_grad_() for p in params]
    alpha, beta, a, b, weight = ref
    w_rec = weight * (1 - torch.eye(6, dtype=F64))
    u, w, spikes, out = (torch.zeros(3, 6, dtype=F64) for _ in range(4))
    out = []
    for x_t in x_ref:
        w = beta * w + a * u + b * spikes
        u = alpha * (u - spikes) + (1 - alpha) * (x_t + spikes @ w_rec.T - w)
        spikes = _Boxcar.apply(u - 1.0)
        out.append(spikes)
    s_ref = torch.stack(out)
    want = torch.autograd.grad((s_ref * g).sum(), [x_ref, *ref])
    assert torch.equal(s, s_ref) and 0.05 < s.mean() < 0.6
    for name, a_, b_ in zip(["x", "alpha", "beta", "a", "b", "W"], got, want):
        assert b_.abs().sum() > 0, name
        torch.testing.assert_close(a_, b_, atol=1e-10, rtol=1e-9, msg=name)
    # A neuron streamed step by step by the user computes them at every call (its
    # parameters may change between steps: an optimizer step in online learning).
    calls.clear()
    with F.streaming(node):
        for x_t in x[:4].detach().float():
            node.float()(x_t)
    assert len(calls) == 4


def test_recurrent_layer_init_streaming_and_errors():
    layer = layers.Recurrent(AdLIFNode(8, step_mode="s"), 8)
    w = layer.recurrent.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)  # orthogonal
    assert layer.recurrent.bias is None and "self_connections=True" in repr(layer)
    x = torch.randn(20, 2, 8) * 2
    whole = layer(x)
    with F.streaming(layer):
        parts = torch.cat([layer(c) for c in x.split([7, 13])])
    assert torch.equal(parts, whole)
    assert not hasattr(layer, "_weight")  # the call's weight is not kept
    with pytest.raises(ShapeError, match="features=8"):
        layer(torch.randn(4, 2, 7))
    with pytest.raises(ConfigurationError, match="self_connections"):
        layers.Recurrent(LIFNode(step_mode="s"), 8, self_connections=1)
    with pytest.raises(ConfigurationError, match="step_mode='s'"):
        layers.Recurrent(LIFNode(), 8)


# -- the network -----------------------------------------------------------------------


def test_rsnn_layers_follow_the_paper():
    model = create_model("rsnn", num_classes=20, in_features=700)
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Linear", "BatchNorm1d", "Recurrent", "Dropout"] * 3 + [
        "Linear", "BatchNorm1d", "LINode"]  # fmt: skip
    cells = [m for m in model.net if isinstance(m, layers.Recurrent)]
    for cell in cells:
        neuron = cell.sub_module
        assert isinstance(neuron, AdLIFNode) and neuron.alpha.shape == (128,)
        assert neuron.strict_firing and neuron.v_reset is None
        assert isinstance(neuron.surrogate_function, Rect)
        assert not cell.self_connections
    assert all(m.bias is None for m in model.net if isinstance(m, torch.nn.Linear))
    assert model.net[1].momentum == 0.05
    # 700·128 + 2·128·128 + 128·20 weights, 3·128·128 recurrent, BN and adLIF params.
    weights = 700 * 128 + 2 * 128 * 128 + 128 * 20 + 3 * 128 * 128
    extra = 3 * (2 * 128 + 4 * 128) + 2 * 20
    assert sum(p.numel() for p in model.parameters()) == weights + extra
    y = model(torch.rand(25, 2, 1, 700).lt(0.05).float())
    assert y.shape == (25, 2, 20)
    with pytest.raises(ShapeError, match="700 values per step"):
        model(torch.rand(25, 2, 699))


def test_rsnn_variants_and_neuron_kwargs():
    lif = create_model("rsnn", in_features=10, neuron="lif", recurrent=False, hidden=6)
    neurons = [m for m in lif.net if isinstance(m, LIFNode)]
    assert len(neurons) == 3 and all(n.tau == 10.0 and n.step_mode == "m" for n in neurons)
    per_layer = create_model("rsnn", in_features=10, hidden=6, neuron_kwargs={"shape": None})
    assert all(m.sub_module.alpha.shape == () for m in per_layer.net
               if isinstance(m, layers.Recurrent))  # fmt: skip
    with pytest.raises(ConfigurationError, match="dropout"):
        RSNN(in_features=10, dropout=1.0)
    with pytest.raises(ConfigurationError, match="recurrent"):
        RSNN(in_features=10, recurrent="yes")
    with pytest.raises(ConfigurationError, match="in_features"):
        RSNN()


def test_neuron_factory_passes_layer_arguments_the_neuron_accepts():
    factory = NeuronFactory("adlif")
    assert factory(shape=7).alpha.shape == (7,)
    assert isinstance(NeuronFactory("lif")(shape=7), LIFNode)  # not accepted: dropped
    assert NeuronFactory("adlif", {"shape": (2, 1)})(shape=7).alpha.shape == (2, 1)


def test_rsnn_learns_and_records_spikes():
    torch.manual_seed(0)
    model = create_model(
        "rsnn", num_classes=3, in_features=12, hidden=16, hidden_layers=2, dropout=0.0
    )
    # Three classes told apart by which inputs are active, and when.
    x = torch.zeros(20, 24, 12)
    labels = torch.arange(24) % 3
    for i, c in enumerate(labels.tolist()):
        x[5 * c : 5 * c + 8, i, 4 * c : 4 * c + 4] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x).mean(0), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    assert torch.equal(model(x).mean(0).argmax(1), labels)
    raster = record_spikes(model, x)
    assert len(raster) == 2 and all(r.shape == (20, 16) for r in raster.values())


def test_rsnn_trains_on_shd_files_from_the_command_line_path(tmp_path):
    # SHD's HDF5 layout (written as tests/test_data_datasets_audio_numpy.py does: no SHD
    # file is available offline) -> frames [T, 700, 1, 1] -> rsnn, through the trainer.
    pytest.importorskip("h5py", reason="SHD files need h5py")
    import numpy as np

    from spikeflow.data import SHD
    from spikeflow.training import Trainer
    from test_data_datasets_audio_numpy import audio_samples, write_spiking_audio
    from train_runs import tiny

    root = tmp_path / "shd"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        samples, labels = audio_samples(rng, n, 20)
        write_spiking_audio(root / f"shd_{split}.h5", samples, labels, SHD.classes)
    config = tiny(tmp_path, "run", dataset="shd", data_dir=str(root), model="rsnn",
                  loss="ce", T=12, epochs=2, batch_size=4, train_samples=None,
                  test_samples=None, model_kwargs={"hidden": 8, "hidden_layers": 2})  # fmt: skip
    result = Trainer(config).fit()
    assert result.epochs_completed == 2
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert "net.2.recurrent.weight" in checkpoint["model"]
    assert checkpoint["model"]["net.0.weight"].shape == (8, 700)


def test_train_compile_runs_the_steps_compiled_and_saves_the_plain_model(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.cli import build_parser
    from spikeflow.training import Trainer, load_checkpoint
    from train_runs import tiny

    args = build_parser().parse_args(["train", "--compile"])
    assert args.compile is True
    config = tiny(tmp_path, "run", model="rsnn", loss="ce", T=3, epochs=1, compile=True,
                  model_kwargs={"hidden": 8, "hidden_layers": 1})  # fmt: skip
    from torch._dynamo.utils import counters

    frames = counters["frames"]["ok"]
    result = Trainer(config).fit()
    assert counters["frames"]["ok"] > frames  # Dynamo compiled the model's forward
    row = result.history[-1]
    # The training monitor records under compile too (it was NaN: docs/training.md).
    assert 0 <= row["train_rate"] <= 1 and 0 <= row["test_rate"] <= 1
    keys = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert "net.2.sub_module.alpha" in keys and not any("_orig_mod" in k for k in keys)


def test_record_spikes_of_one_neuron_per_sample():
    # [B] steps of a single-step neuron, and a multi-step layer on [T, B]: one neuron.
    net = layers.MultiStepContainer(LIFNode(step_mode="s"))
    assert record_spikes(net, torch.rand(4, 3) * 2)["0"].shape == (4, 1)
    assert record_spikes(LIFNode(), torch.rand(4, 3) * 2)["(root)"].shape == (4, 1)
