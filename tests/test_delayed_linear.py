"""Learnable synaptic delays (spikeflow.layers.DelayedLinear), checked against the
definition written as loops over synapses and steps, gradcheck in float64, streaming,
and the authors' width schedule (Hammouamri et al., ICLR 2024)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from spikeflow import functional as F
from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers import (
    DelayedLinear,
    clamp_delays,
    delay_sigma,
    round_delays,
    set_delay_sigma,
)

T, B, IN, OUT, K = 9, 3, 5, 4, 6


def _layer(sigma: float | None = 1.5, bias: bool = True) -> DelayedLinear:
    torch.manual_seed(0)
    return DelayedLinear(IN, OUT, K, bias=bias, sigma=sigma).double()


def _x() -> torch.Tensor:
    return torch.randn(T, B, IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _loop(layer: DelayedLinear, x: torch.Tensor) -> torch.Tensor:
    """``y[t, o] = b[o] + Σ_i Σ_k w[o, i] g(k - d[o, i]) x[t - k, i]``, g a Gaussian of
    width σ normalised over k (a one-hot at round(d) for σ = 0), written out."""
    w, d = layer.weight.detach(), layer.delay.detach().clamp(0, K - 1)
    sigma = float(layer.sigma)
    y = torch.zeros(x.shape[0], x.shape[1], OUT, dtype=x.dtype)
    if layer.bias is not None:
        y += layer.bias.detach()
    for o in range(OUT):
        for i in range(IN):
            if sigma == 0:
                g = [1.0 if k == round(float(d[o, i])) else 0.0 for k in range(K)]
            else:
                g = [math.exp(-0.5 * ((k - float(d[o, i])) / sigma) ** 2) for k in range(K)]
                total = sum(g) + 1e-7
                g = [v / total for v in g]
            for t in range(x.shape[0]):
                for k in range(min(K, t + 1)):
                    y[t, :, o] += w[o, i] * g[k] * x[t - k, :, i]
    return y


@pytest.mark.parametrize("sigma", [0.0, 0.4, 1.5, 5.0])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_the_definition_as_loops(sigma, bias):
    layer, x = _layer(sigma, bias), _x()
    torch.testing.assert_close(layer(x), _loop(layer, x), rtol=1e-12, atol=1e-12)


def test_rounded_delays_are_pure_shifts_like_delay_layers():
    layer, x = _layer(), _x()
    round_delays(layer)
    assert float(layer.sigma) == 0 and torch.equal(layer.delay, layer.delay.round())
    out = layer(x)
    # synapse by synapse: a Delay(d) followed by the weight
    expected = torch.zeros_like(out) + layer.bias.detach()
    for o in range(OUT):
        for i in range(IN):
            shifted = layers.Delay(int(layer.delay[o, i]))(x[:, :, i])
            expected[:, :, o] += layer.weight[o, i].detach() * shifted
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_gradcheck_of_input_weight_delay_and_bias(sigma):
    layer = _layer(sigma).eval()
    x = _x()[:5, :2]

    def f(x, w, d, b):
        return functional_call(layer, {"weight": w, "delay": d, "bias": b}, (x,))

    args = [t.detach().clone().requires_grad_() for t in (x, layer.weight, layer.delay, layer.bias)]
    assert torch.autograd.gradcheck(f, args)


def test_the_delay_gradient_moves_a_delay_towards_the_target():
    # one synapse, the target is the input shifted by 4 steps; start at delay 1
    torch.manual_seed(0)
    layer = DelayedLinear(1, 1, 8, sigma=2.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.delay.fill_(1.0)
    x = (torch.rand(40, 16, 1) < 0.3).float()
    target = layers.Delay(4)(x)
    optimizer = torch.optim.Adam([layer.delay], lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        optimizer.step()
    assert abs(layer.delay.item() - 4.0) < 0.3


def test_streaming_in_chunks_and_single_steps_equals_one_call():
    layer, x = _layer(), _x()
    whole = layer(x)
    with F.streaming(layer):
        chunks = torch.cat([layer(x[:2]), layer(x[2:7]), layer(x[7:])])
    torch.testing.assert_close(chunks, whole, rtol=1e-13, atol=1e-13)
    F.set_step_mode(layer, "s")
    with F.streaming(layer):
        steps = torch.stack([layer(x[t]) for t in range(T)])
    torch.testing.assert_close(steps, whole, rtol=1e-13, atol=1e-13)


def test_the_kernel_clamps_and_clamp_delays_moves_the_parameters():
    layer, x = _layer(), _x()
    with torch.no_grad():
        layer.delay[0, 0] = -3.0
        layer.delay[1, 1] = K + 4.0
    out = layer.train()(x)
    assert float(layer.delay[0, 0]) == -3.0  # a call leaves the parameters alone
    torch.testing.assert_close(out, _loop(layer, x))  # the loop clamps too
    assert clamp_delays(nn.Sequential(layer, neurons.LIFNode())) == 1
    assert float(layer.delay[0, 0]) == 0.0 and float(layer.delay[1, 1]) == K - 1
    torch.testing.assert_close(layer(x), out)


def test_bptt_through_several_calls_of_one_layer():
    # The delays used to be clamped in place at every training call, which broke the
    # graph of an earlier call: single steps, chunks, two views of one batch.
    layer, x = _layer(), _x()
    (layer(x) + layer(x.flip(0))).sum().backward()
    whole = layer.delay.grad.clone()
    layer.zero_grad()
    with F.streaming(layer):
        torch.cat([layer(x[:4]), layer(x[4:])]).sum().backward()
    assert layer.delay.grad.abs().max() > 0
    F.set_step_mode(layer, "s")
    layer.zero_grad()
    with F.streaming(layer):
        torch.stack([layer(x[t]) for t in range(T)]).sum().backward()
    assert whole.abs().max() > 0 and layer.delay.grad.abs().max() > 0


def test_compiles_as_one_graph_and_keeps_dtypes():
    layer, x = _layer(), _x()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), layer(x))
    round_delays(layer)
    torch.testing.assert_close(compiled(x), _loop(layer, x))
    with pytest.raises(RuntimeError, match="same"):
        layer(x.float())  # a float64 layer does not silently compute in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.float()(x.float()).dtype == torch.bfloat16


def test_the_authors_width_schedule():
    # DCLS's Gaussians are |s| + 0.27 wide, s decayed from K // 2 to 0.23 over the first
    # quarter of the epochs (best_config_SHD: K = 25, 150 epochs): 12.27 -> 0.5
    authors, s_param = [], 12.0
    alpha = (0.23 / 12.0) ** (1 / 37)
    for epoch in range(150):
        authors.append(s_param + 0.27)
        if epoch < 37 and s_param > 0.23:
            s_param *= alpha
    ours = [delay_sigma(e, 150, 12.27) for e in range(150)]
    assert ours == pytest.approx(authors, rel=1e-12)
    assert ours[0] == pytest.approx(12.27) and ours[37] == pytest.approx(0.5)
    assert float(DelayedLinear(3, 4, 25).sigma) == pytest.approx(12.27)
    assert delay_sigma(3, 4, 0.1) == 0.1  # already narrower than the final width
    net = nn.Sequential(DelayedLinear(3, 4, 25), neurons.LIFNode(), DelayedLinear(4, 2, 7, sigma=0))
    assert set_delay_sigma(net, 2, 8) == 2
    assert float(net[0].sigma) == pytest.approx(0.5)
    assert float(net[2].sigma) == 0.0  # hard delays stay hard
    assert torch.equal(net.state_dict()["0.sigma"], net[0].sigma)  # checkpoints carry it


def test_bad_arguments_and_shapes_are_named():
    with pytest.raises(ConfigurationError, match="max_delay must be an integer >= 1"):
        DelayedLinear(3, 2, 0)
    with pytest.raises(ConfigurationError, match="sigma must be a finite number >= 0"):
        DelayedLinear(3, 2, 4, sigma=-1.0)
    with pytest.raises(ConfigurationError, match="fraction must be in"):
        delay_sigma(0, 10, 3.0, fraction=0.0)
    with pytest.raises(ConfigurationError, match="final sigma must be above offset"):
        delay_sigma(0, 10, 3.0, final=0.2)
    with pytest.raises(
        ShapeError,
        match=r"expects \[T, B, in_features\] with in_features = 3; got shape \(4, 2, 5\)",
    ):
        DelayedLinear(3, 2, 4)(torch.zeros(4, 2, 5))


# -- the zoo's delay_snn and the trainer ----------------------------------------------


def test_delay_snn_is_the_authors_shd_network():
    from spikeflow.models import create_model

    torch.manual_seed(0)
    net = create_model("delay_snn", in_features=140)
    # 2 x 256 hidden, 20 classes: weights and delays 140*256 + 256*256 + 256*20 each, BN
    assert (
        sum(p.numel() for p in net.parameters()) == 2 * (140 * 256 + 256 * 256 + 256 * 20) + 4 * 256
    )
    delayed = [m for m in net.modules() if isinstance(m, DelayedLinear)]
    assert [m.max_delay for m in delayed] == [25] * 3
    assert float(delayed[0].sigma) == pytest.approx(12.27)
    lif = [m for m in net.modules() if isinstance(m, neurons.LIFNode)]
    assert len(lif) == 2 and lif[0].tau == pytest.approx(1.005) and not lif[0].decay_input
    x = (torch.rand(30, 2, 140) < 0.1).float()
    out = net(x)
    # each of the 3 DelayedLinear inputs is extended by (25 - 1) // 2 = 12 zero steps
    assert out.shape == (30 + 36, 2, 20) and out.dtype == torch.float32
    short = create_model("delay_snn", in_features=140, extend_time=False)
    short.load_state_dict(net.state_dict())
    net.eval(), short.eval()
    with torch.no_grad():  # the first T steps do not depend on the extension
        torch.testing.assert_close(short(x), net(x)[:30])
    with pytest.raises(ShapeError, match="140 values per step"):
        net(torch.zeros(30, 2, 141))
    # frames are flattened per step
    frames = create_model("delay_snn", num_classes=10, in_channels=2, input_size=34, hidden=16)
    assert frames(torch.rand(4, 2, 2, 34, 34)).shape == (4 + 36, 2, 10)


@pytest.mark.parametrize("value", ["False", 0, None])
def test_delay_snn_built_directly_checks_batch_norm_as_create_model_does(value):
    # A string "False" is true: built directly, DelaySNN took it as batch_norm=True.
    from spikeflow.models import create_model
    from spikeflow.models.delays import DelaySNN

    message = rf"model 'delay_snn': argument batch_norm must be true or false, got {value!r} \("
    with pytest.raises(ConfigurationError, match=message) as direct:
        DelaySNN(in_features=4, hidden=2, batch_norm=value)
    with pytest.raises(ConfigurationError) as created:
        create_model("delay_snn", in_features=4, hidden=2, batch_norm=value)
    assert str(direct.value) == str(created.value)
    plain = DelaySNN(in_features=4, hidden=2, batch_norm=False)
    assert not any(isinstance(m, layers.BatchNorm1d) for m in plain.modules())


def test_the_trainer_narrows_the_widths_and_gives_delays_their_learning_rate(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training import Trainer, load_checkpoint
    from train_runs import tiny

    config = tiny(tmp_path, "run", model="delay_snn", loss="ce", epochs=4, lr=2e-3,
                  schedule="none", model_kwargs={"hidden": 16, "max_delay": 3},
                  delay_lr_scale=50.0)  # fmt: skip
    messages: list[str] = []
    Trainer(config, log=messages.append).fit()
    widths = [m for m in messages if m.startswith("delays: Gaussian width")]
    assert widths == [f"delays: Gaussian width {w} steps for epoch {e + 1}"
                      for e, w in enumerate([1.27, 0.5, 0.5, 0.5])]  # fmt: skip
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert float(payload["model"]["net.1.sigma"]) == pytest.approx(0.5)
    groups = payload["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [2e-3, pytest.approx(0.1)]
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3  # 3 layers


STDS = {"prune": "stds", "prune_kwargs": {"final_threshold": 0.1}}


@pytest.mark.parametrize("option", [{"prune": "grad_r"}, {"weight_bits": 4}, STDS])
def test_pruning_and_quantization_refuse_delay_layers(tmp_path, option):
    # They covered nn.Linear and convolutions only: a DelayedLinear silently stayed
    # dense and full precision, and Grad R trained its delays at lr with weight decay.
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training import Trainer
    from train_runs import tiny

    config = tiny(tmp_path, "run", model="delay_snn", loss="ce", optimizer="adam",
                  model_kwargs={"hidden": 8, "max_delay": 3}, **option)  # fmt: skip
    with pytest.raises(ConfigurationError, match="has DelayedLinear layers, which pruning"):
        Trainer(config, log=None).fit()
