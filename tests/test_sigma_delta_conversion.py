"""ANN → sigma-delta network (spikeflow.conversion.to_sigma_delta): equal to the ANN per
step with θ = 0 (outputs and gradients), a hand-derived error bound for θ > 0, streaming,
the report and its errors, and the operation counts of graded spikes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional
from spikeflow.conversion import QCFS, ConversionError, SigmaDeltaNetwork, to_sigma_delta
from spikeflow.energy import count_operations
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.layers import DeltaEncoder, DeltaSynapse, SigmaDelta, delta_activity

f64 = torch.float64


def _per_step(ann: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([ann(step) for step in x])


def _cnn() -> nn.Sequential:
    ann = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU()),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(24, 10),
        nn.GELU(),
        nn.Linear(10, 3),
    ).double()
    with torch.no_grad():  # batch norm statistics that are not the identity
        ann[1].running_mean.uniform_(-0.5, 0.5)
        ann[1].running_var.uniform_(0.5, 2.0)
        ann[1].weight.uniform_(0.5, 1.5)
        ann[1].bias.uniform_(-0.2, 0.2)
    return ann.eval()


def test_theta_zero_equals_the_ann_at_every_step():
    torch.manual_seed(0)
    ann = _cnn()
    sdnn, report = to_sigma_delta(ann)
    assert isinstance(sdnn, SigmaDeltaNetwork) and report.ok
    x = torch.rand(12, 5, 2, 8, 8, dtype=f64)
    torch.testing.assert_close(sdnn(x), _per_step(ann, x), rtol=0, atol=1e-11)
    actions = {e.name: e.action for e in report.entries}
    assert actions["1"] == "folded" and actions["7"] == "replaced"  # BN, dropout removed
    assert actions["2"] == actions["3"] == "converted"  # ReLU and max pool: one unit
    assert sum(isinstance(m, SigmaDelta) for m in sdnn.modules()) == 3
    assert sum(isinstance(m, DeltaSynapse) for m in sdnn.modules()) == 4


@pytest.mark.parametrize("activation", [nn.Sigmoid, nn.Tanh, lambda: QCFS(levels=4, threshold=2.0)])
def test_other_activations_run_on_accumulated_values(activation):
    ann = nn.Sequential(nn.Linear(5, 7), activation(), nn.Linear(7, 2)).double()
    sdnn, _ = to_sigma_delta(ann)
    x = torch.randn(6, 3, 5, dtype=f64)
    torch.testing.assert_close(sdnn(x), _per_step(ann, x), rtol=0, atol=1e-11)


def test_theta_zero_gradients_equal_the_ann():
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(),
        nn.Linear(4, 2),
    ).double()  # fmt: skip
    sdnn, _ = to_sigma_delta(ann)
    x = torch.randn(8, 3, 2, 4, dtype=f64)
    target = torch.randn(8, 3, 2, dtype=f64)
    x_ann, x_sdnn = x.clone().requires_grad_(), x.clone().requires_grad_()
    ((_per_step(ann, x_ann) - target) ** 2).sum().backward()
    ((sdnn(x_sdnn) - target) ** 2).sum().backward()
    torch.testing.assert_close(x_sdnn.grad, x_ann.grad, rtol=0, atol=1e-10)
    for index in ("0", "3", "5"):
        layer, synapse = ann[int(index)], sdnn.get_submodule(index)
        torch.testing.assert_close(synapse.layer.weight.grad, layer.weight.grad, rtol=0, atol=1e-10)
        torch.testing.assert_close(synapse.bias.grad, layer.bias.grad, rtol=0, atol=1e-10)


def test_gradcheck_of_a_converted_network():
    ann = nn.Sequential(nn.Linear(3, 4), nn.Softplus(), nn.Linear(4, 2)).double()
    sdnn, _ = to_sigma_delta(ann)
    x = torch.randn(4, 2, 3, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(sdnn, (x,))


def test_theta_bound_of_a_two_layer_network():
    # Hand-derived: the input's accumulated value is within θ_in of x (elementwise), so
    # the hidden pre-activation is within ||W1||∞·θ_in (row sums of |W1|), ReLU is
    # 1-Lipschitz, and the unit's delta adds less than θ: the hidden accumulated value
    # is within e_h = ||W1||∞·θ_in + θ, and the output within |W2|·e_h (per output).
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    theta_in, theta = 0.02, 0.05
    sdnn, _ = to_sigma_delta(ann, theta, input_threshold=theta_in)
    x = torch.rand(1, 4, 6, dtype=f64) + torch.randn(60, 4, 6, dtype=f64).mul(0.01).cumsum(0)
    with torch.no_grad():
        error = (sdnn(x) - _per_step(ann, x)).abs()
    w1, w2 = ann[0].weight.detach(), ann[2].weight.detach()
    hidden_bound = w1.abs().sum(1) * theta_in + theta  # [8]
    out_bound = w2.abs() @ hidden_bound  # [3]
    assert bool((error <= out_bound + 1e-12).all())
    assert float(error.max()) > 0.05 * float(out_bound.max())  # the bound is not vacuous
    # the hidden layer itself: its unit's reference is within the bound of the ANN's
    unit = sdnn.get_submodule("1")
    with functional.streaming(sdnn):
        sdnn(x)
        hidden = unit.delta.state["ref"]  # accumulated hidden activation after the last step
    assert bool(((hidden - torch.relu(ann[0](x[-1]))).abs() <= hidden_bound + 1e-12).all())
    # θ holds the unit's small changes back (θ = 0 sends every change of a nonzero value)
    exact, _ = to_sigma_delta(ann, 0.0, input_threshold=theta_in)
    sent, sent_exact = delta_activity(sdnn, x)["1.delta"], delta_activity(exact, x)["1.delta"]
    assert unit.threshold == theta and 0.0 < sent < 0.5 * sent_exact


def test_streaming_step_by_step_equals_one_call():
    torch.manual_seed(0)
    ann = _cnn()
    sdnn, _ = to_sigma_delta(ann, 0.03)
    x = torch.rand(1, 2, 2, 8, 8, dtype=f64) + torch.randn(10, 2, 2, 8, 8, dtype=f64).mul(0.02)
    whole = sdnn(x)
    functional.set_step_mode(sdnn, "s")
    with functional.streaming(sdnn):
        steps = torch.stack([sdnn(step) for step in x])
    functional.set_step_mode(sdnn, "m")
    torch.testing.assert_close(steps, whole, rtol=0, atol=1e-12)
    assert torch.equal(sdnn(x), whole)


def test_the_ann_is_not_modified_and_linear_batch_norm_needs_a_sample():
    ann = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    ann.eval()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    x = torch.randn(5, 3, 4, dtype=f64)
    # Without a sample the batch norm runs in a unit (on accumulated values: exact too)
    sdnn, report = to_sigma_delta(ann)
    entry = report.entries[1]
    assert entry.action == "converted" and "not folded" in entry.detail
    assert "pass sample=" in entry.detail and "(shared with 1)" in report.entries[2].detail
    torch.testing.assert_close(sdnn(x), _per_step(ann, x), rtol=0, atol=1e-11)
    sdnn, report = to_sigma_delta(ann, sample=torch.randn(3, 4, dtype=f64))
    assert [e.action for e in report.entries][:2] == ["replaced", "folded"]
    torch.testing.assert_close(sdnn(x), _per_step(ann, x), rtol=0, atol=1e-11)
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert ann[0].bias is not None


class _Block(nn.Module):
    def forward(self, x):
        return x * 2


def test_unconvertible_parts_are_named():
    with pytest.raises(ConversionError, match=r"nn\.Sequential") as info:
        to_sigma_delta(_Block())
    assert "forward of its own" in str(info.value)
    ann = nn.Sequential(
        nn.Linear(3, 4), _Block(), nn.Softmax(dim=0), nn.MaxPool1d(2, return_indices=True)
    )
    with pytest.raises(ConversionError, match="3 part") as info:
        to_sigma_delta(ann)
    message = str(info.value)
    assert "1 (_Block)" in message and "Softmax(dim=0)" in message
    assert "return_indices" in message
    _, report = to_sigma_delta(nn.Sequential(nn.Linear(3, 4), _Block()), strict=False)
    assert [e.name for e in report.unconverted] == ["1"]
    # a Sequential with a forward of its own (a spikeflow container) is not walked into
    from spikeflow.layers import SeqToANNContainer
    from spikeflow.neurons import IFNode

    inner = SeqToANNContainer(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(ConversionError, match="0 \\(SeqToANNContainer\\)"):
        to_sigma_delta(nn.Sequential(inner))
    sdnn, report = to_sigma_delta(nn.Sequential(nn.Linear(3, 3), IFNode()), strict=False)
    assert "left out" in report.unconverted[0].detail and len(sdnn) == 3
    with pytest.raises(ConfigurationError, match="threshold must be finite and >= 0, got -1"):
        to_sigma_delta(nn.Sequential(nn.Linear(2, 2)), -1.0)
    with pytest.raises(ConfigurationError, match=r"\(input_threshold\): threshold must"):
        to_sigma_delta(nn.Sequential(nn.Linear(2, 2)), input_threshold=float("inf"))
    sdnn, _ = to_sigma_delta(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(DTypeError, match="floating-point"):
        sdnn(torch.ones(3, 1, 2, dtype=torch.int64))


# -- operations ---------------------------------------------------------------------------


def test_graded_spikes_are_macs_per_nonzero_delta():
    layer = nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 4.0]]))
    net = nn.Sequential(DeltaSynapse(layer))
    # nonzero deltas: (t0, input 0) reaches 1 nonzero weight, (t0, input 2) 2, (t1, input
    # 1) 1; zeros cost nothing: 4 MACs. A delta of the same magnitude everywhere (±1)
    # is still graded: MACs, not ACs.
    x = torch.tensor([[[0.5, 0.0, -1.0]], [[0.0, 0.25, 0.0]]])
    report = count_operations(net, x)
    assert (report.macs, report.acs) == (4, 0)
    assert "graded" in str(report)
    ones = torch.tensor([[[1.0, 0.0, -1.0]], [[0.0, 1.0, 0.0]]])
    assert (count_operations(net, ones).macs, count_operations(net, ones).acs) == (4, 0)
    assert (count_operations(nn.Sequential(layer), ones).acs) == 4  # plain layer: spikes


def test_graded_conv_counts_by_hand():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    net = nn.Sequential(DeltaSynapse(conv))
    x = torch.zeros(2, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 0.3  # a corner reaches the 4 outputs within one pixel
    x[1, 0, 0, 1, 1] = -0.7  # the centre reaches all 9
    assert count_operations(net, x).macs == 13
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 0.0  # the top-left tap: from the corner to output (1, 1),
    assert count_operations(net, x).macs == 11  # from the centre to output (2, 2)


def test_a_constant_input_costs_only_its_first_step():
    torch.manual_seed(0)
    ann = _cnn().float()
    sdnn, _ = to_sigma_delta(ann)
    image = torch.rand(1, 3, 2, 8, 8)
    one = count_operations(sdnn, image)
    many = count_operations(sdnn, image.expand(16, -1, -1, -1, -1))
    assert one.macs > 0 and many.macs == one.macs  # later deltas are all zero
    dense = count_operations(ann, image[0], samples=3).macs  # the ANN: every input, dense
    assert one.macs <= dense
    assert [layer.kind for layer in many.layers] == ["Conv2d", "Conv2d", "Linear", "Linear"]


def test_input_threshold_filters_small_changes():
    ann = nn.Sequential(nn.Linear(4, 3))
    sdnn, _ = to_sigma_delta(ann, input_threshold=0.1)
    assert isinstance(sdnn.input, DeltaEncoder) and sdnn.input.threshold == 0.1
    x = torch.ones(10, 2, 4) + torch.randn(10, 2, 4) * 0.01  # noise below θ
    report = count_operations(sdnn, x)
    assert report.macs == count_operations(sdnn, x[:1]).macs  # only the first step sent


# -- the example on real data ---------------------------------------------------------------


def _run_example(argv: list[str]):
    from conftest import load_example

    module = load_example("sigma_delta_digits")
    threads = torch.get_num_threads()
    try:
        return module.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_example_on_the_digits(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    result = _run_example(["--epochs", "10", "--thetas", "0,0.05"])
    exact, coarse = result.rows[0.0], result.rows[0.05]
    assert result.ann_last > 0.9
    # θ = 0 is the ANN on every frame (float32 rounding only)
    assert (exact.accuracy, exact.last) == (result.ann_accuracy, result.ann_last)
    assert exact.max_error < 1e-4 and exact.input_activity > 0.999  # noise changes every pixel
    # θ = 0.05 holds the noise back: far fewer deltas and MACs, about the same accuracy
    assert coarse.input_activity < 0.2 and coarse.macs < 0.5 * exact.macs
    assert exact.macs < result.ann_macs and coarse.accuracy >= result.ann_accuracy - 0.03
    assert "ANN*" in capsys.readouterr().out


def test_example_on_real_nmnist_recordings():
    from conftest import require_shared_data

    root = require_shared_data("nmnist-small")
    options = {"--nmnist-root": str(root), "--epochs": "4", "--steps": "5", "--thetas": "0"}
    result = _run_example(["--dataset", "nmnist", *(v for kv in options.items() for v in kv)])
    row = result.rows[0.0]
    assert row.last == result.ann_last and row.max_error < 1e-4
    # frame t adds one slice of events: the input changes only where events arrived
    assert 0.0 < row.input_activity < 0.3 and row.macs < result.ann_sparse_macs
