"""``quant.loihi_sdnn_grid``: sigma-delta networks trained on Loihi's fixed-point grid give
the outputs of ``import_netx(export_netx(net))`` exactly (times the output scale 2^18),
and of the transcription of Lava's fixed-point processes in ``test_netx_sdnn``, on the
real 8x8 digits (sklearn), after training on the grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.conversion import to_sigma_delta
from spikeflow.errors import ConfigurationError
from spikeflow.interop import export_netx, import_netx
from spikeflow.quant import LoihiBiasGrid, LoihiWeightGrid, loihi_grid, loihi_sdnn_grid
from spikeflow.quant.loihi_sdnn_grid import floor_graded_spikes

sklearn_datasets = pytest.importorskip("sklearn.datasets")
from test_netx_sdnn import _lava_sdnn  # noqa: E402  (needs sklearn too)

T = 8
UNIT = 2**18  # the fixed-point output's integers per unit of the float output


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = sklearn_datasets.load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16, torch.tensor(data.target)


def _fade_in(images: torch.Tensor) -> torch.Tensor:
    """Real images fading in over T steps, ``[T, B, ...]``, *off* the 1/64 input grid
    (steps of 1/128): the network's own input rounding is exercised."""
    ramp = torch.arange(1, T + 1, dtype=images.dtype).reshape(T, *[1] * images.dim()) / T
    return images.unsqueeze(0) * ramp


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        modules += [nn.Linear(n_in, n_out, bias=not last)] + ([] if last else [nn.ReLU()])
    return nn.Sequential(*modules)


def _train(sdnn: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """Adam on the last step's output; the accuracies on the training batch per step."""
    opt = torch.optim.Adam(sdnn.parameters(), lr=0.01)
    accuracies = []
    for _ in range(steps):
        opt.zero_grad()
        out = sdnn(x)[-1]
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
        accuracies.append((out.argmax(-1) == y).double().mean().item())
    return accuracies


def _round_trip(sdnn: nn.Module, x: torch.Tensor, shape: tuple, tmp_path) -> tuple:
    """The float network's output and the fixed-point network's, in float units."""
    with torch.no_grad():
        expected = sdnn(x).double()
    fixed = import_netx(export_netx(sdnn, tmp_path / "grid_sdnn.net", shape))
    got = fixed(torch.round(x * 64).long())
    return got.double() / UNIT, expected


@pytest.mark.parametrize(
    ("sizes", "theta", "seed", "dtype"),
    [
        ((64, 32, 10), 2 / 64, 0, torch.float32),
        ((64, 32, 16, 10), 0.0, 1, torch.float32),
        ((64, 32, 16, 10), 3 / 64, 2, torch.float32),
        ((64, 32, 16, 10), 5.4 / 64, 3, torch.float32),  # off the grid: int(64 θ) = 5
        ((64, 24, 24, 10), 1 / 64, 4, torch.float64),
    ],
)
def test_trained_on_the_grid_the_export_is_exact(digits, sizes, theta, seed, dtype, tmp_path):
    x, y = digits
    torch.manual_seed(seed)
    sdnn, _ = to_sigma_delta(_mlp(sizes).to(dtype), theta)
    loihi_sdnn_grid(sdnn)
    assert sdnn.input.threshold == int(64 * theta) / 64
    _train(sdnn, _fade_in(x[:1500].to(dtype)), y[:1500], steps=8)
    test_x = _fade_in(x[1500:].to(dtype))
    got, expected = _round_trip(sdnn, test_x, (64,), tmp_path)
    assert torch.equal(got, expected)
    # and the transcription of Lava's own fixed-point processes
    synapses = list(sdnn)[1::2]
    dense = []
    for i, synapse in enumerate(synapses):
        weight = LoihiWeightGrid().integers(synapse.layer.weight).numpy().astype(np.float32)
        last = i == len(synapses) - 1
        bias = None if last else np.round(synapse.bias.detach().double().numpy() * 64)
        dense.append((weight, bias, int(64 * theta)))
    q = torch.round(test_x * 64).long().numpy()
    for b in range(0, q.shape[1], 10):  # Lava's processes run one sample
        lava = _lava_sdnn(q[:, b], int(64 * theta), dense)
        assert np.array_equal(lava / UNIT, expected[:, b].numpy())


def test_two_hidden_layers_need_the_floor(digits, tmp_path):
    # without the grid's flooring of the graded spikes (only weights, biases, thresholds
    # and input on their grids) the float network is not the chip's
    x, y = digits
    torch.manual_seed(1)
    sdnn, _ = to_sigma_delta(_mlp((64, 32, 16, 10)), 0.0)
    loihi_sdnn_grid(sdnn)
    _train(sdnn, _fade_in(x[:1500]), y[:1500], steps=8)
    for unit in (sdnn._modules["1"], sdnn._modules["3"]):
        unit.delta._forward_hooks.clear()
    got, expected = _round_trip(sdnn, _fade_in(x[1500:]), (64,), tmp_path)
    assert not torch.equal(got, expected)


def test_convolution_network_is_exact(digits, tmp_path):
    x, y = digits
    torch.manual_seed(5)
    ann = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10, bias=False),
    )
    sdnn, _ = to_sigma_delta(ann, 2 / 64)
    with pytest.raises(ConfigurationError, match="give input_shape"):
        loihi_sdnn_grid(sdnn)
    loihi_sdnn_grid(sdnn, (1, 8, 8))
    images = x.reshape(-1, 1, 8, 8)
    _train(sdnn, _fade_in(images[:1000]), y[:1000], steps=6)
    got, expected = _round_trip(sdnn, _fade_in(images[1500:]), (1, 8, 8), tmp_path)
    assert torch.equal(got, expected)


def test_training_on_the_grid_improves_accuracy(digits):
    x, y = digits
    torch.manual_seed(6)
    sdnn, _ = to_sigma_delta(_mlp((64, 32, 16, 10)), 2 / 64)
    loihi_sdnn_grid(sdnn)
    test_x, test_y = _fade_in(x[1500:]), y[1500:]
    with torch.no_grad():
        before = (sdnn(test_x)[-1].argmax(-1) == test_y).double().mean().item()
    _train(sdnn, _fade_in(x[:1500]), y[:1500], steps=40)
    with torch.no_grad():
        after = (sdnn(test_x)[-1].argmax(-1) == test_y).double().mean().item()
    assert before < 0.3 and after > 0.75


def test_gradients_pass_straight_through(digits):
    x, y = digits
    torch.manual_seed(7)
    sdnn, _ = to_sigma_delta(_mlp((64, 32, 16, 10)), 1 / 64)
    loihi_sdnn_grid(sdnn)
    nn.functional.cross_entropy(sdnn(_fade_in(x[:200]))[-1], y[:200]).backward()
    for synapse in (sdnn._modules[k] for k in "024"):
        grad = synapse.layer.parametrizations.weight.original.grad
        assert grad is not None and bool(grad.ne(0).any())
    for synapse in (sdnn._modules[k] for k in "02"):
        grad = synapse.parametrizations.bias.original.grad
        assert grad is not None and bool(grad.ne(0).any())
    # the pieces: floor and bias grid are the identity in the backward (but the clamp)
    s = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    floored = floor_graded_spikes(s)
    assert torch.equal(floored, torch.floor(s.detach() * 4096) / 4096)
    (g,) = torch.autograd.grad((floored * torch.arange(7.0).double()).sum(), s)
    assert torch.equal(g, torch.arange(7.0).double().expand(5, 7))
    b = torch.tensor([0.3, -1.01, 600.0, -600.0], dtype=torch.float64, requires_grad=True)
    grid = LoihiBiasGrid()(b)
    limit = (2**11 - 1) / 64  # export_netx's bias bound (bias << 12 in 24 bits)
    assert torch.equal(grid, torch.tensor([19 / 64, -65 / 64, limit, -limit]).double())
    (g,) = torch.autograd.grad(grid.sum(), b)
    assert torch.equal(g, torch.tensor([1.0, 1.0, 0.0, 0.0]).double())


def test_input_is_rounded_to_the_input_grid():
    sdnn, _ = to_sigma_delta(_mlp((3, 4, 2)), 0.0)
    loihi_sdnn_grid(sdnn)
    seen = []
    sdnn.input.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    sdnn(torch.tensor([[[0.01, 0.3, -0.5]]]))
    assert torch.equal(seen[0], torch.tensor([[[1 / 64, 19 / 64, -32 / 64]]]))


def test_refusals():
    def net() -> nn.Sequential:
        torch.manual_seed(0)
        return to_sigma_delta(_mlp((8, 6, 3)), 1 / 64)[0]

    cumulative = net()
    cumulative[2].delta.cum_error = True
    with pytest.raises(ConfigurationError, match="cum_error"):
        loihi_sdnn_grid(cumulative)
    learned = net()
    learned[2].delta = layers.DeltaEncoder(1 / 64, requires_grad=True)
    with pytest.raises(ConfigurationError, match="learns its threshold"):
        loihi_sdnn_grid(learned)
    gelu = net()
    gelu[2].activation = nn.GELU()
    with pytest.raises(ConfigurationError, match="ReLU"):
        loihi_sdnn_grid(gelu)
    per_neuron = net()
    per_neuron[2].delta = layers.DeltaEncoder(torch.tensor([1.0, 2, 1, 1, 1, 1]) / 64)
    with pytest.raises(ConfigurationError, match="one vThMant per layer"):
        loihi_sdnn_grid(per_neuron)
    huge = net()
    huge[2].delta.threshold = 2.0**18
    with pytest.raises(ConfigurationError, match="24-bit"):
        loihi_sdnn_grid(huge)
    out_bias = net()
    out_bias[3].bias = nn.Parameter(torch.ones(3))
    with pytest.raises(ConfigurationError, match="output layer has a bias"):
        loihi_sdnn_grid(out_bias)
    with pytest.raises(ConfigurationError, match="starts with a DeltaEncoder"):
        loihi_sdnn_grid(nn.Sequential(nn.Linear(4, 2, bias=False), layers.SigmaDecoder()))
    with pytest.raises(ConfigurationError, match=r"an nn\.Sequential"):
        loihi_sdnn_grid(layers.SigmaDelta())
    twice = net()
    loihi_sdnn_grid(twice)
    with pytest.raises(ConfigurationError, match="quantized already"):
        loihi_sdnn_grid(twice)
    # the CUBA grid points sigma-delta networks here
    with pytest.raises(ConfigurationError, match="loihi_sdnn_grid"):
        loihi_grid(net())


def test_inexact_sums_are_refused_at_the_call():
    sdnn, _ = to_sigma_delta(_mlp((4, 3, 2)), 0.0)
    with torch.no_grad():
        sdnn[1].layer.weight.fill_(3.0)
    loihi_sdnn_grid(sdnn)
    x = torch.full((2, 1, 4), 12.0)  # sums of 4 * 3 * 12 = 144: beyond 2^7
    with pytest.raises(ConfigurationError, match=r"'1'.*below 128"):
        sdnn(x)
    assert sdnn.double()(x.double()).shape == (2, 1, 2)  # float64 holds them
    with pytest.raises(ConfigurationError, match="float16"):
        sdnn.half()(x.half())


def test_streaming_on_the_grid_equals_one_call(digits):
    # the hooks act on single steps too: step by step (netx's time loop) and chunks give
    # the one call's outputs, which are the fixed-point network's
    from spikeflow import functional

    x, _ = digits
    torch.manual_seed(8)
    sdnn, _ = to_sigma_delta(_mlp((64, 32, 16, 10)), 1 / 64)
    loihi_sdnn_grid(sdnn)
    frames = _fade_in(x[1500:1600])
    with torch.no_grad():
        whole = sdnn(frames)
        with functional.streaming(sdnn):
            chunks = torch.cat([sdnn(frames[:3]), sdnn(frames[3:])])
        functional.set_step_mode(sdnn, "s")
        with functional.streaming(sdnn):
            steps = torch.stack([sdnn(frame) for frame in frames])
    assert torch.equal(chunks, whole) and torch.equal(steps, whole)


def test_input_shape_is_checked():
    sdnn, _ = to_sigma_delta(_mlp((8, 6, 3)), 0.0)
    for bad in ((7,), (0,), "8", (8.0,)):
        with pytest.raises(ConfigurationError, match="input_shape"):
            loihi_sdnn_grid(sdnn, bad)
