"""EventProp in ``spikeflow train`` (``--eventprop``): the zoo's ``eventprop_snn``,
differentiated by the adjoint (or, without the flag, by BPTT with a surrogate through the
same forward pass), trains, resumes exactly, and what the adjoint cannot take is refused
by name before anything is written."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.cli.options import build_parser
from spikeflow.errors import ConfigurationError
from spikeflow.learn.eventprop import lif_recurrent_adjoint, parameters_from_cuba
from spikeflow.models import create_model
from spikeflow.neurons import CubaLIFNode
from spikeflow.neurons.parallel_lif import linear_scan
from spikeflow.surrogate import Sigmoid
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.data import to_time_major
from spikeflow.training.eventprop import EventPropClassifier
from train_runs import tiny

RUN = {"model": "eventprop_snn", "eventprop": "eventprop", "T": 12, "lr": 1e-2,
       "model_kwargs": {"hidden": [24]}}  # fmt: skip


def _net(gradient: str, hidden=(7, 5), recurrent: bool = False) -> EventPropClassifier:
    torch.manual_seed(0)
    net = create_model("eventprop_snn", num_classes=3, in_features=6, hidden=hidden,
                       recurrent=recurrent, weight_scale=4.0).double()  # fmt: skip
    net.set_gradient(gradient)
    return net


def _input() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand((25, 4, 6), generator=g, dtype=torch.float64) * 3.0


@pytest.mark.parametrize("recurrent", [False, True])
def test_the_three_gradients_share_the_forward_pass(recurrent):
    """BPTT's loop fires on the steps the adjoint's forward fires on, so the output is
    the same whichever gradient trains; the leaky readout is ``y[t] = κ y[t−1] + W z[t]``."""
    x = _input()
    outs, trains = [], []
    for gradient in ("eventprop", "norse", "bptt"):
        net = _net(gradient, recurrent=recurrent)
        with torch.no_grad():
            spikes = net.spikes(x)
        assert 0.02 < float(spikes[0].mean()) < 0.5 and float(spikes[1].sum()) > 0
        trains.append(spikes)
        outs.append(net(x))
    for spikes in trains[1:]:
        for z, z_adjoint in zip(spikes, trains[0]):
            assert torch.equal(z, z_adjoint)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-12, atol=1e-12)
    u = net.readout(net.spikes(x)[-1])
    kappa = math.exp(-0.1)
    y = torch.zeros_like(u[0])
    for t in range(x.shape[0]):
        y = kappa * y + u[t]
        torch.testing.assert_close(outs[2][t], y, rtol=1e-12, atol=1e-12)


def _loop_readout(u: torch.Tensor, kappa: float) -> torch.Tensor:
    """``y[t] = κ y[t−1] + u[t]`` step by step (the readout before it was vectorised)."""
    y, ys = torch.zeros_like(u[0]), []
    for u_t in u:
        y = kappa * y + u_t
        ys.append(y)
    return torch.stack(ys)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_vectorised_readout_equals_the_loop_with_its_gradients(dtype):
    """The readout runs as a log-depth scan: the loop's values and every parameter's
    gradient within 1e-12 (float64) and 1e-5 (float32) of the largest, T = 25 and 300;
    its float64 gradient passes gradcheck."""
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for steps in (25, 300):
        net = _net("eventprop", recurrent=True).to(dtype)
        g = torch.Generator().manual_seed(steps)
        x = torch.rand((steps, 4, 6), generator=g, dtype=dtype) * 3.0
        out = net(x)
        want = _loop_readout(net.readout(net.spikes(x)[-1]), net.kappa)
        scale = float(want.detach().abs().max())
        assert scale > 1.0
        torch.testing.assert_close(out, want, rtol=tol, atol=tol * scale)
        weights = torch.randn(out.shape, generator=g, dtype=dtype)
        params = list(net.parameters())
        got = torch.autograd.grad((out * weights).sum(), params)
        ref = torch.autograd.grad((want * weights).sum(), params)
        for mine, reference in zip(got, ref, strict=True):
            bound = tol * max(float(reference.abs().max()), 1.0)
            assert float(reference.abs().max()) > 0
            torch.testing.assert_close(mine, reference, rtol=tol, atol=bound)
    if dtype == torch.float64:
        u = torch.randn(40, 2, 3, dtype=dtype, requires_grad=True)
        torch.autograd.gradcheck(lambda v: linear_scan(v, net.kappa), (u,))
        torch.testing.assert_close(linear_scan(u, net.kappa), _loop_readout(u, net.kappa))


def test_eventprop_gradients_are_the_adjoints():
    """With ``--eventprop`` the first layer's gradient is lif_recurrent_adjoint's (the
    second layer takes spikes: ``spike_input=True``, EventProp across layers)."""
    x = _input()
    net = _net("eventprop")
    assert [layer.spike_input for layer in net.hidden] == [False, True]
    loss = F.cross_entropy(net(x).amax(0), torch.tensor([0, 2, 1, 1]))
    loss.backward()
    w0 = net.hidden[0].input_weights.detach().clone().requires_grad_(True)
    w1 = net.hidden[1].input_weights.detach().clone().requires_grad_(True)
    p = net.hidden[0].p
    z0, _ = lif_recurrent_adjoint(x, w0, None, p)
    z1, _ = lif_recurrent_adjoint(z0, w1, None, p, spike_input=True)
    u = net.readout(z1)
    ys, y = [], torch.zeros_like(u[0])
    for u_t in u:
        y = math.exp(-0.1) * y + u_t
        ys.append(y)
    F.cross_entropy(torch.stack(ys).amax(0), torch.tensor([0, 2, 1, 1])).backward()
    torch.testing.assert_close(net.hidden[0].input_weights.grad, w0.grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(net.hidden[1].input_weights.grad, w1.grad, rtol=1e-12, atol=0)
    assert float(w0.grad.abs().sum()) > 0
    net.set_gradient("norse")  # Norse's adjoint passes the count derivative
    assert [(layer.jumps, layer.spike_input) for layer in net.hidden] == [("norse", False)] * 2


def test_bptt_gradients_are_cuba_lif_nodes():
    """Without ``--eventprop``: the gradient of spikeflow's CubaLIFNode (r="tau_syn",
    hard reset to 0, strict firing: the same neuron, ``parameters_from_cuba``) with its
    Sigmoid(α = 4) surrogate, through autograd, float64."""
    x = _input()
    net = _net("bptt", hidden=(7,))
    target = torch.tensor([0, 2, 1, 1])
    F.cross_entropy(net(x).amax(0), target).backward()
    node = CubaLIFNode(tau_syn=5e-3, tau_mem=1e-2, r="tau_syn", dt=1e-3, v_reset=0.0,
                       strict_firing=True, step_mode="m",
                       surrogate_function=Sigmoid(alpha=4.0))  # fmt: skip
    assert parameters_from_cuba(node) == net.hidden[0].p
    w = net.hidden[0].input_weights.detach().clone().requires_grad_(True)
    u = net.readout(node(x @ w.t()))
    ys, y = [], torch.zeros_like(u[0])
    for u_t in u:
        y = math.exp(-0.1) * y + u_t
        ys.append(y)
    F.cross_entropy(torch.stack(ys).amax(0), target).backward()
    assert float(w.grad.abs().sum()) > 0
    torch.testing.assert_close(net.hidden[0].input_weights.grad, w.grad, rtol=1e-10, atol=1e-12)


def test_the_trainers_step_is_one_adam_step_on_the_adjoints_gradient(tmp_path):
    cfg = tiny(tmp_path, "one", **RUN, epochs=1, train_samples=32, batch_size=32)
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    assert trainer.raw_model.gradient == "eventprop" and cfg.loss is None
    start = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=32)))
    value = trainer._train_step(x, y, 0, 1)
    net = create_model("eventprop_snn", num_classes=10, in_channels=1, input_size=8,
                       hidden=[24])  # fmt: skip
    net.load_state_dict(start)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = F.cross_entropy(net(to_time_major(x, 12, True)).amax(0), y)  # ce_max_membrane
    loss.backward()
    optimizer.step()
    assert value == pytest.approx(float(loss), rel=1e-6)
    for key, weight in net.state_dict().items():
        assert torch.allclose(trainer.raw_model.state_dict()[key], weight, atol=1e-7), key


def test_a_run_learns_and_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    changes = {**RUN, "epochs": 2, "train_samples": 128}
    history = Trainer(tiny(tmp_path, "full", **changes), log=None).fit().history
    assert history[-1]["test_acc"] > 0.3  # chance 0.1
    assert 0.0 < history[-1]["train_rate"] < 1.0  # the taps feed the monitors
    Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "split"))
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for row, again in zip(full["history"], split["history"], strict=True):
        row.pop("epoch_time_s"), again.pop("epoch_time_s")
        assert row == again


def test_without_the_flag_the_network_trains_by_bptt(tmp_path):
    cfg = tiny(tmp_path, "bptt", **{**RUN, "eventprop": None}, epochs=1, train_samples=32)
    trainer = Trainer(cfg, log=None)
    trainer._setup()
    assert trainer.raw_model.gradient == "bptt"
    assert resolve(cfg).loss == "mse"  # the zoo's default; --eventprop: ce_max_membrane
    assert resolve(tiny(tmp_path, "ep", **RUN)).loss == "ce_max_membrane"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"online": True, "loss": "ce"}, "--online"),
        ({"tbptt": 2}, "--tbptt"),
        ({"eprop": "symmetric"}, "--eprop"),
        ({"amp": "bf16"}, "--amp bf16"),
        ({"compile": True}, "--compile"),
        ({"weight_bits": 4}, "--weight-bits"),
        ({"eventprop": "exact"}, "eventprop must be one of"),
    ],
)
def test_what_eventprop_cannot_take_is_refused_by_name(changes, message):
    values = {"dataset": "digits", **RUN, **changes}
    with pytest.raises(ConfigurationError, match=message.replace("-", r"\-")):
        resolve(config_from_dict(values))


def test_eventprop_needs_its_network_and_leaves_no_folder(tmp_path):
    cfg = tiny(tmp_path, "plif", eventprop="eventprop")
    with pytest.raises(ConfigurationError, match="--model eventprop_snn"):
        Trainer(cfg, log=None).fit()
    assert not (tmp_path / "plif").exists()


def test_the_command_line_option():
    parse = build_parser().parse_args
    assert parse(["train", "--eventprop"]).eventprop == "eventprop"
    assert parse(["train", "--eventprop", "norse"]).eventprop == "norse"
    assert not hasattr(parse(["train"]), "eventprop")
    with pytest.raises(SystemExit):
        parse(["train", "--eventprop", "bptt"])


def test_a_bptt_run_refuses_recompute_by_name(tmp_path):
    """Without ``--eventprop`` ``--recompute`` was accepted and recomputed nothing (it
    wrapped the spike taps only; the hidden layers run in the network's own loop)."""
    cfg = tiny(tmp_path, "bptt", **{**RUN, "eventprop": None}, recompute=True, epochs=1)
    with pytest.raises(ConfigurationError, match="--recompute: model 'eventprop_snn' runs"):
        Trainer(cfg, log=None).fit()
    assert not (tmp_path / "bptt").exists()
