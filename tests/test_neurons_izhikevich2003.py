"""The classic Izhikevich (2003) neuron ``Izhikevich2003Node`` and its presets.

Hand-computed steps (a resting step and a spike, per-neuron starts); the twenty presets
equal to Norse 1.1's behaviours (parameters, steps, starting states), and all of them
at once (per-neuron parameters) equal to Norse's ``izhikevich_feed_forward_step`` in
spikes, ``v``, ``u`` and float64 gradients (input, learnable threshold) on every
backend (the reference loop, the C kernel, Triton); Norse's ``IzhikevichCell`` step by
step; the behaviours the presets are named for (tonic spiking is regular, adaptation
slows down, phasic spiking fires once); gradcheck on every backend; chunked streaming
and single-step equal to one call; the errors.
"""

from __future__ import annotations

import functools

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import IZHIKEVICH_PRESETS, Izhikevich2003Node, IzhikevichNode
from spikeflow.surrogate import Sigmoid, SuperSpike
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64
NORSE_NAME = {"accommodation": "accomodation"}  # Norse's spelling


# -- hand-computed steps ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_steps(backend):
    # dt = 1, regular spiking (a 0.02, b 0.2, c -65, d 8), I = 10, two neurons:
    # v = -65, u = -13: H = -65 + (169 - 325 + 140 + 13 + 10) = -58, u' = -13 + 0 = -13;
    # v = 25, u = 5:    H = 25 + (25 + 125 + 140 - 5 + 10) = 320 >= 30: V = -65,
    #                   u = 5 + 0.02 (5 - 5) + 8 = 13.
    device = kernel_device(backend)
    node = Izhikevich2003Node(dt=1.0, v_init=torch.tensor([-65.0, 25.0]), backend=backend,
                              store_v_seq=True).double().to(device)  # fmt: skip
    with F.streaming(node):
        s = node(torch.full((1, 1, 2), 10.0, dtype=F64, device=device))
        u = node.u
    assert s.view(-1).tolist() == [0, 1]
    assert node.v_seq.view(-1).tolist() == [-58.0, -65.0]
    assert u.view(-1).tolist() == pytest.approx([-13.0, 13.0], abs=1e-13)


def test_defaults_state_and_repr():
    node = Izhikevich2003Node()
    assert node.initial_values() == {"v": -65.0, "u": -13.0}  # u = b v
    assert node.u is None  # not streaming
    assert node.declaration().state_names == ("v", "u")
    text = repr(node)
    assert "a=0.02, b=0.2, c=-65, d=8" in text and "u_init=b*v_init" in text
    assert "v_threshold=30" in text and "dt=0.25" in text
    assert "d=tensor(3,)" in repr(Izhikevich2003Node(d=torch.tensor([2.0, 4.0, 8.0])))
    # not SpikingJelly's dimensionless variant
    assert not isinstance(node, IzhikevichNode) and IzhikevichNode().v_threshold == 1.0


# -- presets and Norse -----------------------------------------------------------------------


def test_presets_are_norses():
    izh = pytest.importorskip("norse.torch.functional.izhikevich")
    behaviours = {name: b for name, b in vars(izh).items()
                  if isinstance(b, izh.IzhikevichSpikingBehavior)}  # fmt: skip
    assert len(behaviours) == len(IZHIKEVICH_PRESETS) == 20
    for name, preset in IZHIKEVICH_PRESETS.items():
        b = behaviours[NORSE_NAME.get(name, name)]
        p = b.p
        assert (preset.a, preset.b, preset.c, preset.d) == (p.a, p.b, p.c, p.d), name
        assert (preset.sq, preset.mn, preset.bias) == (p.sq, p.mn, p.bias), name
        assert preset.dt == p.tau_inv * 1e-3, name  # Norse's default dt
        node = Izhikevich2003Node.preset(name)
        start = node.initial_values()
        # Norse keeps its starting state in float32 (u = b v rounded)
        assert start["v"] == pytest.approx(b.s.v.item(), abs=1e-5), name
        assert start["u"] == pytest.approx(float(b.s.u), abs=1e-5), name
        assert node.c == p.c and node.v_threshold == p.v_th == 30
    assert Izhikevich2003Node.preset("dap", dt=0.05).dt == 0.05  # overrides


def _presets_as_tensors(names):
    """The presets ``names`` (one ``dt``) as one population: per-neuron parameters."""
    izh = pytest.importorskip("norse.torch.functional.izhikevich")
    behaviours = [getattr(izh, NORSE_NAME.get(n, n)) for n in names]
    columns = {k: torch.tensor([getattr(b.p, k) for b in behaviours], dtype=F64)
               for k in ("a", "b", "c", "d", "sq", "mn", "bias")}  # fmt: skip
    starts = {k: torch.tensor([getattr(b.s, k).item() for b in behaviours], dtype=F64)
              for k in ("v", "u")}  # fmt: skip
    return behaviours[0].p.tau_inv, columns, starts


@functools.lru_cache
def _norse_run(group: int, steps: int):
    """Norse's run of the presets ``GROUPS[group]`` on a random current: the input,
    the starting values, spikes, ``v``, the final ``u`` and the gradients (input,
    threshold) of a spike and membrane loss, computed once for every backend."""
    from norse.torch.functional.izhikevich import (
        IzhikevichParameters,
        IzhikevichState,
        izhikevich_feed_forward_step,
    )

    tau_inv, columns, starts = _presets_as_tensors(GROUPS[group])
    torch.manual_seed(group)
    x = (torch.rand(steps, 2, len(GROUPS[group]), dtype=F64) * 30 - 5).requires_grad_()
    theta = torch.tensor(30.0, dtype=F64, requires_grad=True)
    p = IzhikevichParameters(**columns, v_th=theta, tau_inv=tau_inv)
    zero = torch.zeros_like(x[0])
    state = IzhikevichState(zero + starts["v"], zero + starts["u"])
    z, v = [], []
    for x_t in x:
        z_t, state = izhikevich_feed_forward_step(x_t, state, p, dt=1e-3)
        z.append(z_t)
        v.append(state.v)
    z, v = torch.stack(z), torch.stack(v)
    torch.manual_seed(1)
    g = torch.randn_like(z)
    grads = torch.autograd.grad((z * g).sum() + 1e-3 * v.sum(), [x, theta])
    return x.detach(), tau_inv, columns, starts, z.detach(), v.detach(), state.u.detach(), g, grads


# The presets grouped by their step (Norse's tau_inv).
_BY_DT: dict[float, list[str]] = {}
for _name, _p in IZHIKEVICH_PRESETS.items():
    _BY_DT.setdefault(_p.dt, []).append(_name)
GROUPS = sorted(_BY_DT.values(), key=len, reverse=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_norse_for_every_preset(backend):
    """Every preset at once, one population per step size, against Norse's step with
    the same per-neuron parameters (Triton's interpreter: the largest group, fewer
    steps); a random current around the presets' rheobases."""
    pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    device = kernel_device(backend)
    groups, steps = ([0], CHECKPOINT + 9) if backend == "triton" else (range(len(GROUPS)), 100)
    fired = []
    for group in groups:
        x, tau_inv, columns, starts, z, v, u, g, want = _norse_run(group, steps)
        node = Izhikevich2003Node(
            **columns, dt=tau_inv * 1e-3, v_init=starts["v"], u_init=starts["u"],
            strict_firing=True, surrogate_function=SuperSpike(alpha=1.0), backend=backend,
            store_v_seq=True, learnable_threshold=True,
        ).double().to(device)  # fmt: skip
        xx = x.to(device).requires_grad_()
        with F.streaming(node):
            s = node(xx)
            u_sf = node.u
        assert torch.equal(s.detach().cpu(), z), f"spikes differ from Norse's: {GROUPS[group]}"
        torch.testing.assert_close(node.v_seq.detach().cpu(), v, atol=1e-10, rtol=0)
        torch.testing.assert_close(u_sf.detach().cpu(), u, atol=1e-10, rtol=0)
        fired.append(z.sum((0, 1)))
        loss = (s * g.to(device)).sum() + 1e-3 * node.v_seq.sum()
        got = torch.autograd.grad(loss, [xx, node.v_threshold])
        for name, a, b in zip(("x", "v_th"), got, want):
            assert b.abs().sum() > 0, name
            torch.testing.assert_close(a.cpu(), b, atol=1e-9 * b.abs().max().item(), rtol=1e-9)
    fired = torch.cat(fired)
    assert (fired > 0).float().mean() > 0.6  # most presets fire under this current


def test_equals_norse_izhikevich_cell_step_by_step():
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.izhikevich import tonic_bursting

    cell = norse.IzhikevichCell(tonic_bursting)
    node = Izhikevich2003Node.preset(
        "tonic_bursting", strict_firing=True, surrogate_function=SuperSpike(), step_mode="s"
    ).double()
    x = torch.full((2, 3), 15.0, dtype=F64)  # Izhikevich's (2004) stimulus for bursting
    state, spikes = None, 0
    with F.streaming(node):
        for _ in range(120):  # the first burst
            z, state = cell(x, state)
            s = node(x)
            assert torch.equal(s, z)
            torch.testing.assert_close(node.v, state.v.expand(2, 3), atol=1e-9, rtol=0)
            torch.testing.assert_close(node.u, state.u.expand(2, 3), atol=1e-9, rtol=0)
            spikes += int(s.sum())
    assert spikes > 8 * 6


# -- the behaviours ----------------------------------------------------------------------------


def _spike_times(name, current, steps):
    node = Izhikevich2003Node.preset(name).double()
    s = node(torch.full((steps, 1), current, dtype=F64))
    return s.view(-1).nonzero().view(-1).tolist()


def test_presets_behave_as_named():
    """Izhikevich's (2004) stimuli: tonic spiking fires at a constant rate, spike
    frequency adaptation slows down, phasic spiking fires once."""
    tonic = torch.tensor(_spike_times("tonic_spiking", 14.0, 2000)).diff()
    assert len(tonic) > 10 and tonic[2:].max() - tonic[2:].min() <= 1
    adapting = torch.tensor(_spike_times("spike_frequency_adaptation", 30.0, 2000)).diff()
    assert len(adapting) > 5 and adapting[-1] > 2 * adapting[0]
    assert len(_spike_times("phasic_spiking", 0.5, 2000)) == 1


# -- kernels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """float64 gradcheck of spikes, membranes and ``u`` with respect to the input, the
    threshold and per-neuron ``a`` and ``d``, on a smooth surrogate (Triton's
    interpreter: gradcheck's fast mode)."""
    device = kernel_device(backend)
    node = Izhikevich2003Node(dt=0.5, surrogate_function=Sigmoid(alpha=0.5, spiking=False))
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    x = torch.rand(4 if backend == "triton" else 6, 3, dtype=F64, device=device) * 20
    x.requires_grad_()
    theta = torch.tensor(30.0, dtype=F64, device=device).requires_grad_()
    a = torch.tensor([0.02, 0.1, 0.05], dtype=F64, device=device).requires_grad_()
    d = torch.tensor([8.0, 2.0, -1.0], dtype=F64, device=device).requires_grad_()
    runner = resolve_backend(backend, x)
    start = {"v": torch.tensor([-65.0, -40.0, 20.0], dtype=F64, device=device), "u": -13.0}

    def outputs(x, theta, a, d):
        values = {**params, "a_dt": node.dt * a, "d": d}
        spikes, final, v_seq = runner(decl, x, dict(start), values, theta, rule, True)
        return spikes, v_seq, final["u"]

    fast = backend == "triton"
    assert torch.autograd.gradcheck(outputs, (x, theta, a, d), fast_mode=fast)


# -- streaming -------------------------------------------------------------------------------


def _make(backend):
    return Izhikevich2003Node(
        d=torch.tensor([8.0, 2.0, 4.0]), v_threshold=torch.tensor(30.0),
        learnable_threshold=True, surrogate_function=SuperSpike(), backend=backend,
    ).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_streaming_equals_one_call(backend):
    device = kernel_device(backend)
    torch.manual_seed(4)
    split = (3, 4, 5) if backend == "triton" else (5, 9, 9)  # the interpreter is slow
    x = torch.rand(sum(split), 2, 3, dtype=F64, device=device) * 40.0
    make = lambda: _make(backend).to(device)  # noqa: E731
    whole, _ = check_chunked_streaming(make, x, "v_threshold", split)
    assert whole.sum() > 0


def test_single_step_equals_multi_step_and_no_state_leaks():
    node = _make("auto")
    x = torch.rand(40, 2, 3, dtype=F64) * 40.0
    multi = node(x)
    assert torch.equal(node(x), multi) and multi.sum() > 0  # the second call starts afresh
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"v_reset": -65.0}, "resets its membrane to c .*pass c=..., not v_reset"),
        ({"dt": 0.0}, r"dt must be a finite number > 0 \(ms\)"),
        ({"dt": float("inf")}, r"dt must be a finite number > 0 \(ms\)"),
        ({"c": 40.0}, r"v_threshold \(30.0\) must be above v_reset \(40.0\)"),
        ({"c": torch.tensor([-65.0, 35.0])}, r"must be above v_reset \(35.0\)"),
        ({"a": float("nan")}, "a must be finite"),
        ({"u_init": "0"}, "u_init must be a float or a tensor"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        Izhikevich2003Node(**kwargs)


def test_bad_preset_and_shapes_are_named():
    with pytest.raises(
        ConfigurationError, match="unknown Izhikevich preset 'tonic'; choose one of"
    ):
        Izhikevich2003Node.preset("tonic")
    with pytest.raises(ShapeError, match=r"a of shape \(4,\) does not broadcast"):
        Izhikevich2003Node(a=torch.full((4,), 0.02))(torch.rand(3, 2, 5))
    with pytest.raises(ConfigurationError, match="per-neuron values"):
        Izhikevich2003Node(v_init=torch.tensor([-65.0, -70.0])).initial_values()
