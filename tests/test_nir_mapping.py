"""Imported NIR neurons follow NIR's equations under forward Euler (reference loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeflow import neurons
from spikeflow.errors import ConfigurationError
from spikeflow.interop import Scale, import_from_nir
from spikeflow.interop.nir_mapping import default_dt, delay_steps, leaky_from_nir, leaky_to_nir

nir = pytest.importorskip("nir", reason="the nir extra is not installed")

N = 4


def _graph(node):
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([N])),
            "neuron": node,
            "output": nir.Output(output_type=np.array([N])),
        },
        edges=[("input", "neuron"), ("neuron", "output")],
    )


def _run(node, x, dt, convention="nir"):
    net = import_from_nir(_graph(node), dt=dt, convention=convention, dtype=torch.float64)
    return net(x), net


def _euler(x, dt, tau, r, v_leak, thr=None, v_reset=0.0, tau_syn=None, w_in=1.0, v0=0.0):
    """NIR's neuron ODEs with forward Euler; fire on v > thr, then v = v_reset.

    ``tau=None`` is IF (dv/dt = r I); ``tau_syn`` adds CubaLIF's current
    (tau_syn dI/dt = -I + w_in x, the membrane sees the updated current).
    """
    v = torch.full_like(x[0], v0)
    i = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        drive = x_t
        if tau_syn is not None:
            i = i + dt / tau_syn * (-i + w_in * x_t)
            drive = i
        if tau is None:
            v = v + dt * r * drive
        else:
            v = v + dt / tau * (v_leak - v + r * drive)
        if thr is None:
            out.append(v)
            continue
        s = (v > thr).to(x.dtype)
        v = torch.where(s > 0, torch.full_like(v, v_reset), v)
        out.append(s)
    return torch.stack(out)


def _x():
    return torch.rand(40, 3, N, dtype=torch.float64) * 3


def test_lif_general_parameters():
    """Per-neuron tau, r not in {1, tau/dt}, v_leak != v_reset: still NIR's equation."""
    dt = 0.5
    tau = np.array([1.0, 2.0, 3.0, 5.0])
    r, v_leak, thr, v_reset = 0.7, 0.2, 1.0, -0.1
    node = nir.LIF(
        tau=tau,
        r=np.full(N, r),
        v_leak=np.full(N, v_leak),
        v_threshold=np.full(N, thr),
        v_reset=np.full(N, v_reset),
    )
    x = _x()
    got, _ = _run(node, x, dt)
    # spikeflow starts the membrane at v_reset (docs/nir.md)
    expected = _euler(x, dt, torch.from_numpy(tau), r, v_leak, thr, v_reset, v0=v_reset)
    assert torch.equal(got, expected)
    assert 0 < got.sum() < got.numel()


@pytest.mark.parametrize(("r", "decay_input"), [(1.0, True), (4.0, False)])
def test_lif_uniform_maps_to_lifnode(r, decay_input):
    dt, tau = 0.25, 1.0  # 4 steps
    node = nir.LIF(tau=np.full(N, tau), r=np.full(N, r), v_leak=np.zeros(N), v_threshold=np.ones(N))
    x = _x()
    got, net = _run(node, x, dt)
    lif = net.module("neuron")
    assert isinstance(lif, neurons.LIFNode)
    assert lif.tau == 4.0 and lif.decay_input is decay_input and lif.strict_firing
    assert torch.equal(got, _euler(x, dt, tau, r, 0.0, 1.0))
    assert 0 < got.sum() < got.numel()


def test_if_gain_is_dt_r():
    dt, r = 0.25, 3.0
    node = nir.IF(r=np.full(N, r), v_threshold=np.full(N, 1.5))
    x = _x()
    got, net = _run(node, x, dt)
    assert isinstance(net.module("neuron")[0], Scale)
    assert torch.equal(got, _euler(x, dt, None, r, 0.0, 1.5))
    assert 0 < got.sum() < got.numel()


def test_cubalif_with_w_in():
    dt, tau_syn, tau_mem, r, w_in, v_leak = 1.0, 3.0, 5.0, 2.0, 1.5, 0.1
    node = nir.CubaLIF(
        tau_syn=np.full(N, tau_syn),
        tau_mem=np.full(N, tau_mem),
        r=np.full(N, r),
        v_leak=np.full(N, v_leak),
        v_threshold=np.ones(N),
        w_in=w_in,
    )
    x = _x()
    got, _ = _run(node, x, dt)
    expected = _euler(x, dt, tau_mem, r, v_leak, 1.0, tau_syn=tau_syn, w_in=w_in)
    assert torch.equal(got, expected)
    assert 0 < got.sum() < got.numel()


def test_li_per_neuron():
    dt = 0.5
    tau = np.array([1.0, 1.5, 2.0, 4.0])
    node = nir.LI(tau=tau, r=np.full(N, 2.0), v_leak=np.full(N, 0.3))
    x = _x()
    got, _ = _run(node, x, dt)
    expected = _euler(x, dt, torch.from_numpy(tau), 2.0, 0.3, v0=0.3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_mapping_functions():
    assert leaky_to_nir(4.0, True, 1e-3) == (4e-3, 1.0)
    assert leaky_to_nir(4.0, False, 1e-3) == (4e-3, 4.0)
    m = leaky_from_nir(4e-3, 4.0, 1e-3, "nir", "n")
    assert (m.tau, m.decay_input, m.gain) == (pytest.approx(4.0), False, 1.0)
    m = leaky_from_nir(4e-3, 2.0, 1e-3, "nir", "n")
    assert (m.decay_input, m.gain) == (True, 2.0)
    assert leaky_from_nir(4e-3, 2.0, 1e-3, "norse", "n").gain == 1.0  # Norse ignores r
    assert delay_steps(3e-3, 1e-3, "d") == 3
    assert default_dt("snntorch") == 1e-4 and default_dt("norse") == 1e-3
    with pytest.raises(ConfigurationError, match="shorter than one step"):
        leaky_from_nir(1e-4, 1.0, 1e-3, "nir", "n")


_ONES, _ZEROS = np.ones(N), np.zeros(N)
_SHORT = np.array([5e-3, 6e-3, 7e-3, 8e-3])


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            nir.LIF(tau=np.full(N, 5e-3), r=_ONES, v_leak=_ZEROS, v_threshold=_ONES),
            r"tau = 0.005",
        ),
        (
            nir.LIF(tau=_SHORT, r=_ONES, v_leak=_ZEROS, v_threshold=_ONES),
            r"tau = 0.005 \(the shortest of 4 values\)",
        ),
        (nir.LI(tau=_SHORT, r=_ONES, v_leak=_ZEROS), r"tau = 0.005 \(the shortest of 4 values\)"),
        (
            nir.CubaLIF(
                tau_syn=np.full(N, 2e-3),
                tau_mem=_ONES * 5,
                r=_ONES,
                v_leak=_ZEROS,
                v_threshold=_ONES,
            ),
            r"tau_syn = 0.002",
        ),
        (
            nir.CubaLIF(
                tau_syn=_ONES * 5, tau_mem=_SHORT, r=_ONES, v_leak=_ZEROS, v_threshold=_ONES
            ),
            r"tau_mem = 0.005 \(the shortest of 4 values\)",
        ),
    ],
    ids=["lif-uniform", "lif-per-neuron", "li-per-neuron", "cubalif-tau-syn", "cubalif-tau-mem"],
)
def test_every_time_constant_shorter_than_dt_names_the_node_and_the_dt(node, message):
    # Per-neuron LIF/LI and every CubaLIF used to fail in the neuron constructor, naming
    # neither the node nor the dt to pass (LI even compared the NIR tau in steps).
    hint = r"is shorter than one step dt = 1; .*import_from_nir\(\.\.\., dt="
    with pytest.raises(ConfigurationError, match=rf"NIR node 'neuron': {message} {hint}"):
        import_from_nir(_graph(node))
    import_from_nir(_graph(node), dt=1e-3)  # the dt the graph was made for


def test_li_node_steps_streaming_and_errors():
    from spikeflow.errors import ShapeError
    from spikeflow.functional import streaming

    li = neurons.LINode(tau=torch.tensor([2.0, 3.0, 4.0, 5.0]), v_leak=0.1)
    x = torch.rand(12, 2, N)
    whole = li(x)
    v = torch.full((2, N), 0.1)
    for t in range(12):  # methods.md 1.2 charge with decay_input, no fire
        v = v + (x[t] - (v - 0.1)) / li.tau
        torch.testing.assert_close(whole[t], v)
    with streaming(li):
        chunks = torch.cat([li(x[:5]), li(x[5:])])
    assert torch.equal(chunks, whole)
    single = neurons.LINode(tau=li.tau, v_leak=0.1, step_mode="s")
    with streaming(single):
        assert torch.equal(torch.stack([single(x_t) for x_t in x]), whole)
    with pytest.raises(ConfigurationError, match="tau"):
        neurons.LINode(tau=0.5)
    with pytest.raises(ShapeError, match="tau of shape"):
        li(torch.rand(3, 2, N + 1))


def test_single_node_and_streaming_through_cycles():
    from spikeflow.errors import StateError
    from spikeflow.functional import streaming

    node = nir.LIF(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N), v_threshold=np.ones(N))
    x = _x().float()
    assert torch.equal(import_from_nir(node)(x), neurons.LIFNode(2.0, strict_firing=True)(x))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([N])),
            "lif": node,
            "rec": nir.Linear(weight=np.eye(N, dtype=np.float32) * 0.5),
            "output": nir.Output(output_type=np.array([N])),
        },
        edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
    )
    net = import_from_nir(graph)
    net(x)
    with pytest.raises(StateError, match="cycl"), streaming(net):
        net(x)


def test_the_export_keeps_its_import_paths_after_the_node_builders_moved():
    import spikeflow.interop as interop
    from spikeflow.interop import nir_export, nir_nodes

    assert interop.export_to_nir is nir_export.export_to_nir
    assert interop.write_nir is nir_export.write_nir
    assert nir_export.__all__ == ["export_to_nir", "write_nir"]
    # the builders the exporter dispatches to are nir_nodes' (one definition of each)
    assert nir_export._LAYER_BASES[torch.nn.Linear] is nir_nodes._linear
    assert nir_export._LAYER_BASES[torch.nn.Conv2d] is nir_nodes._conv


def test_one_broadcast_helper_for_export_and_neurons():
    import importlib

    from spikeflow.interop.nir_neurons import full_array

    nodes = importlib.import_module("spikeflow.interop.nir_nodes")  # the export's builders
    assert nodes.full_array is full_array and not hasattr(nodes, "_full_like")
    from_float = full_array(0.5, (2, 3))
    from_tensor = full_array(torch.tensor([[1.0], [2.0]]), (2, 3))
    assert from_float.shape == from_tensor.shape == (2, 3)
    assert from_tensor[1].tolist() == [2.0, 2.0, 2.0]
    from_tensor[0, 0] = 9.0  # a new array, not a read-only broadcast view
