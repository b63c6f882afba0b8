"""The neuron names of the model zoo beyond the spiking ones of ``test_models.py``:
LIAF (an analog output) trains in a zoo network; SpikingJelly 2.0's ternary, integer
and DSR neurons build a zoo network and train a step; the mV-scale models (COBA LIF,
Izhikevich 2003) are refused by name with the reason; snnTorch's Leaky, Synaptic and
Lapicque by name, with its documented decays; its DeltaLeaky by name (a step of training,
the membrane by hand); Norse's AdaLIF refused by name with the reason."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError
from spikeflow.losses import get_loss
from spikeflow.models import NOT_IN_ZOO, create_model, list_neurons, resolve_neuron
from spikeflow.neurons import (
    AdaLIFNode,
    DeltaLeakyNode,
    DSRIFNode,
    ILIFNode,
    LapicqueNode,
    LeakyNode,
    LIAFNode,
    SynapticNode,
    TernaryIFNode,
    TernaryLIFNode,
)
from spikeflow.surrogate import ATan


def _liaf_layers(model: torch.nn.Module) -> list[LIAFNode]:
    return [m for m in model.modules() if isinstance(m, LIAFNode)]


def test_liaf_trains_a_step_of_a_zoo_network():
    torch.manual_seed(0)
    model = create_model("plif_digits", num_classes=4, neuron="liaf", channels=4, hidden=8,
                         dropout=0.0)  # fmt: skip
    layers = _liaf_layers(model)
    assert len(layers) == 4 and "liaf" in list_neurons()
    # the zoo's defaults: act(H) with ReLU; the model's own (detach_reset, ATan) kept
    assert all(n.act is torch.relu and not n.threshold_related and n.detach_reset for n in layers)
    x, y = torch.rand(3, 8, 1, 8, 8), torch.arange(8) % 4
    loss_fn = get_loss("ce")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = loss_fn(model(x), y)
    before.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # every layer learns
    optimizer.step()
    with torch.no_grad():
        assert loss_fn(model(x), y) < before.detach()


# name -> (class, the neuron_kwargs of a network of T = 6 steps). The ternary LIF
# without input decay (the paper's): a tiny network's hidden LIF layer with it stays
# silent at the start (plain LIF's too), and the weights after it get no gradient.
ADDED = {
    "ternary_if": (TernaryIFNode, None),
    "ternary_lif": (TernaryLIFNode, {"decay_input": False}),
    "ilif": (ILIFNode, None),
    "dsr_if": (DSRIFNode, {"T": 6}),
}


@pytest.mark.parametrize("name", ADDED)
def test_spikingjelly2_neurons_build_a_zoo_network_and_train_a_step(name):
    cls, kwargs = ADDED[name]
    torch.manual_seed(0)
    model = create_model("plif_digits", num_classes=4, neuron=name, channels=4, hidden=8,
                         dropout=0.0, neuron_kwargs=kwargs)  # fmt: skip
    layers = [m for m in model.modules() if isinstance(m, cls)]
    assert len(layers) == 4 and name in list_neurons()
    x, y = torch.rand(6, 8, 1, 8, 8) * 3.0, torch.arange(8) % 4
    loss = get_loss("ce")(model(x), y)
    loss.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        # every weight learns (DSR's threshold gets a gradient only where a rate is above it)
        assert p.grad.abs().sum() > 0 or n.endswith("v_threshold"), n
    torch.optim.SGD(model.parameters(), lr=0.05).step()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters()
               if not n.endswith("v_threshold"))  # fmt: skip


def test_liaf_takes_its_arguments_from_neuron_kwargs():
    model = create_model("plif_digits", neuron="liaf", channels=4, hidden=8,
                         neuron_kwargs={"act": "sigmoid", "threshold_related": True,
                                        "tau": 3.0})  # fmt: skip
    layers = _liaf_layers(model)
    assert all(n.act is torch.sigmoid and n.threshold_related and n.tau == 3.0 for n in layers)
    with pytest.raises(ConfigurationError, match="act 'swish' is not a known activation"):
        create_model("plif_digits", neuron="liaf", neuron_kwargs={"act": "swish"})


@pytest.mark.parametrize(
    ("name", "reason"),
    [("coba_lif", r"CobaLIFNode is Norse's conductance-based LIF in mV .* pass no gradient"),
     ("Izhikevich2003", r"Izhikevich2003Node .* in mV and ms .* 'izhikevich' is SpikingJelly")],
)  # fmt: skip
def test_mv_scale_neurons_are_refused_by_name_with_the_reason(name, reason):
    with pytest.raises(ConfigurationError, match=rf"neuron '{name}' is not offered .*{reason}"):
        create_model("plif_digits", neuron=name)
    assert name.lower() not in list_neurons()
    assert set(NOT_IN_ZOO) == {"coba_lif", "izhikevich2003", "dh_lif", "ada_lif"}


def test_dh_lif_is_refused_by_name_with_the_model_to_use():
    with pytest.raises(ConfigurationError, match=r"neuron 'dh-lif' is not offered .*dh_srnn_seq"):
        create_model("recurrent_lif_seq", neuron="dh-lif")
    assert "dh_lif" not in list_neurons()


# name -> (class, its decays as built by name: snnTorch's documented values)
SNNTORCH = {
    "leaky": (LeakyNode, {"beta": 0.9}),
    "synaptic": (SynapticNode, {"alpha": 0.9, "beta": 0.8}),
    "lapicque": (LapicqueNode, {"R": 5.0, "C": 1e-3, "time_step": 1e-3}),
    "delta_leaky": (DeltaLeakyNode, {"beta": 0.9, "v_threshold": 1.0}),
}


@pytest.mark.parametrize("name", SNNTORCH)
def test_snntorch_neurons_by_name_build_a_zoo_network_and_train_a_step(name):
    cls, constants = SNNTORCH[name]
    torch.manual_seed(0)
    model = create_model("plif_digits", num_classes=4, neuron=name, channels=4, hidden=8,
                         dropout=0.0)  # fmt: skip
    layers = [m for m in model.modules() if isinstance(m, cls)]
    assert len(layers) == 4 and name in list_neurons()
    for node in layers:
        for key, value in constants.items():
            assert float(getattr(node, key)) == pytest.approx(value), key
        assert isinstance(node.surrogate_function, ATan)  # the model's default surrogate
    x, y = torch.rand(6, 8, 1, 8, 8) * 3.0, torch.arange(8) % 4
    get_loss("ce")(model(x), y).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_lapicque_by_name_is_snntorchs_tutorial_neuron_and_takes_beta():
    """U ← (1 − k) U + k R X with k = 1e-3 / (5 · 1e-3) = 0.2, R = 5: U ← 0.8 U + X. By
    hand for X = 0.5: U = 0.5, 0.9, 1.22 (fires on U > 1), then 1.22·0.8 + 0.5 − 1 (the
    delayed subtract reset) = 0.476."""
    node = resolve_neuron("lapicque")(store_v_seq=True)
    spikes = node(torch.full((4, 1, 1), 0.5, dtype=torch.float64))
    hand = torch.tensor([0.5, 0.9, 1.22, 0.476], dtype=torch.float64)
    torch.testing.assert_close(node.v_seq.flatten(), hand)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    # neuron_kwargs beta replaces the tutorial's constants (snnTorch's beta alone: R = 1)
    by_beta = create_model("plif_digits", neuron="lapicque", channels=4, hidden=8,
                           neuron_kwargs={"beta": 0.5})  # fmt: skip
    assert all(float(m.R) == 1.0 and float(m.k) == pytest.approx(math.log(2))
               for m in by_beta.modules() if isinstance(m, LapicqueNode))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"LapicqueNode does not accept \['tau'\]"):
        create_model("plif_digits", neuron="lapicque", neuron_kwargs={"tau": 2.0})


def test_a_registry_neuron_is_named_by_its_class_with_the_peer_argument_hint():
    from spikeflow.models.common import NeuronFactory

    # "leaky" is a functools.partial in the registry: the error names its class
    expected = (
        r"neuron LeakyNode does not accept \['spike_grad'\]"
        r".*\(spike_grad: spikeflow's surrogate_function\)"
    )
    with pytest.raises(ConfigurationError, match=expected):
        NeuronFactory("leaky", {"spike_grad": "atan"})


def test_delta_leaky_by_name_is_snntorchs_with_beta_0_9():
    """U = 0.9 U + X, fires on |U[t] - U[t-1]| > 1 (no reset): X = 1.5, 0, 0, 2 gives
    U = 1.5, 1.35, 1.215, 3.0935 and changes 1.5, -0.15, -0.135, 1.8785."""
    node = resolve_neuron("delta-leaky")(store_v_seq=True)
    spikes = node(torch.tensor([1.5, 0.0, 0.0, 2.0], dtype=torch.float64).view(4, 1, 1))
    hand = torch.tensor([1.5, 1.35, 1.215, 3.0935], dtype=torch.float64)
    torch.testing.assert_close(node.v_seq.flatten(), hand)
    assert spikes.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    layers = [m for m in create_model("plif_digits", neuron="delta_leaky", channels=4, hidden=8,
                                      neuron_kwargs={"delta_threshold": 0.5}).modules()
              if isinstance(m, DeltaLeakyNode)]  # fmt: skip
    assert len(layers) == 4 and all(float(m.v_threshold) == 0.5 for m in layers)
    with pytest.raises(ConfigurationError, match=r"DeltaLeakyNode does not accept \['tau'\]"):
        create_model("plif_digits", neuron="delta_leaky", neuron_kwargs={"tau": 2.0})


def test_ada_lif_is_refused_by_name_with_the_reason():
    with pytest.raises(ConfigurationError, match=r"neuron 'ada_lif' is not offered .*1% of"):
        create_model("plif_digits", neuron="ada_lif")
    assert "ada_lif" not in list_neurons()
    # the class itself is taken, as the message says
    model = create_model("plif_digits", channels=4, hidden=8, neuron=AdaLIFNode)
    assert len([m for m in model.modules() if isinstance(m, AdaLIFNode)]) == 4
