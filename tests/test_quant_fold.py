"""Integer-only deployment (``quant.fold_weight_scales``): on a real N-MNIST batch
(``../shared/data/nmnist-small``, event counts) a float64 conv net of IF or LIF neurons
with quantized weights (LSQ per channel, fixed per layer) fires the same spikes in every
layer once its weights are integers and its scales are in the thresholds; an IF net
then holds integers only (weights, thresholds, membranes). A quantized real-valued
input folds too. Where folding is not exact the error names the module and why."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import require_shared_data
from spikeflow import layers, quant
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import AdaptiveLIFNode, IFNode, LIFNode, ParametricLIFNode


@pytest.fixture(scope="module")
def nmnist_batch() -> torch.Tensor:
    """Eight real N-MNIST test recordings as [T=8, B=8, 2, 34, 34] event counts."""
    from spikeflow.data import NMNIST, ToFrame

    data = NMNIST(require_shared_data("nmnist-small"), train=False)
    frames = ToFrame(8)
    x = torch.stack([torch.as_tensor(frames(data[i * 12][0])) for i in range(8)])
    return x.transpose(0, 1).double()


def _net(neuron, bias=False, norm=False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1, bias=bias),
        layers.BatchNorm2d(8) if norm else nn.Identity(),
        neuron(), layers.MaxPool2d(2),
        layers.Conv2d(8, 16, 3, padding=1, bias=False), neuron(), layers.MaxPool2d(2),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Linear(16 * 8 * 8, 10, bias=False), neuron(),
    ).double()  # fmt: skip


def _spikes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, o: out.append(o))
             for m in model.modules() if isinstance(m, (IFNode, LIFNode))]  # fmt: skip
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return out


NEURONS = {
    "if": lambda: IFNode(v_threshold=0.5),
    "if_strict": lambda: IFNode(v_threshold=0.5, strict_firing=True),
    "lif": lambda: LIFNode(tau=2.0, v_threshold=0.25),
    "lif_no_decay_input": lambda: LIFNode(tau=3.0, decay_input=False, v_threshold=0.5),
    "plif_soft": lambda: ParametricLIFNode(v_threshold=0.25, v_reset=None),
}


@pytest.mark.parametrize("method,per_channel", [("lsq", True), ("fixed", False)])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_the_folded_net_fires_the_same_spikes_on_real_nmnist(nmnist_batch, kind, method,
                                                             per_channel):  # fmt: skip
    model = _net(NEURONS[kind])
    quant.apply_weight_quantization(model, 4, per_channel=per_channel, method=method)
    model.eval()
    reference = _spikes(model, nmnist_batch)
    folded, report = quant.fold_weight_scales(model, nmnist_batch, integer_input=True)
    spikes = _spikes(folded, nmnist_batch)
    assert [(r.layer, r.neuron) for r in report] == [("0", "2"), ("4", "5"), ("9", "10")]
    for layer, (a, b) in enumerate(zip(reference, spikes)):
        assert 0.001 < float(a.mean()) < 0.5, (layer, float(a.mean()))  # every layer fires
        assert torch.equal(a, b), layer
    integer = kind.startswith("if")
    for r in report:
        layer = dict(folded.named_modules())[r.layer]
        assert not hasattr(layer, "parametrizations")
        assert torch.equal(layer.weight, torch.round(layer.weight))
        assert int(layer.weight.abs().max()) <= 7
        assert r.integer_membrane is integer
        theta = torch.as_tensor(dict(folded.named_modules())[r.neuron].v_threshold)
        if integer:
            assert torch.equal(theta, torch.round(theta))
        assert (r.scale.dim() == 0) is (not per_channel)
    assert torch.equal(_spikes(model, nmnist_batch)[0], reference[0])  # the original: untouched
    assert hasattr(model[0], "parametrizations")


def test_if_membranes_are_integers_and_the_thresholds_the_rounded_ratios(nmnist_batch):
    model = _net(lambda: IFNode(v_threshold=0.5, store_v_seq=True))
    quant.apply_weight_quantization(model, 3, method="lsq")
    folded, report = quant.fold_weight_scales(model.eval(), nmnist_batch, integer_input=True)
    _spikes(folded, nmnist_batch)
    for r in report:
        neuron = dict(folded.named_modules())[r.neuron]
        assert torch.equal(neuron.v_seq, torch.round(neuron.v_seq))  # an integer register
        assert torch.equal(torch.as_tensor(neuron.v_threshold), torch.ceil(0.5 / r.scale))


def test_a_quantized_real_valued_input_folds_into_the_first_threshold():
    torch.manual_seed(0)
    model = nn.Sequential(
        layers.Conv2d(1, 6, 3, padding=1, bias=False), IFNode(v_threshold=0.4),
        layers.Flatten(), layers.Linear(6 * 8 * 8, 10, bias=False), IFNode(v_threshold=0.4),
    ).double()  # fmt: skip
    quant.apply_weight_quantization(model, 4, method="lsq")
    quant.apply_input_quantization(model, 4)
    x = torch.rand(4, 6, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with pytest.raises(ConfigurationError, match="has not seen an input yet"):
        quant.fold_weight_scales(model, x)
    reference = _spikes(model.eval(), x)
    folded, report = quant.fold_weight_scales(model, x)
    step = model[0].input_quantizer.step.detach()
    _, w_step = quant.integer_weights(model[0])
    assert torch.equal(report[0].scale, (step * w_step).reshape(-1, 1, 1))
    taken: list[torch.Tensor] = []
    folded[0].register_forward_hook(lambda m, i, o: taken.append(i[0]))
    spikes = _spikes(folded, x)
    assert torch.equal(taken[0], model[0].input_quantizer.integers(x).double())
    assert all(torch.equal(a, b) for a, b in zip(reference, spikes))
    assert 0.01 < float(reference[0].mean()) < 0.5 and float(reference[1].mean()) > 0.001


def _conv() -> nn.Module:
    return layers.Conv2d(2, 4, 3, bias=False)


#: (the modules of a per-layer quantized net, what the refusal says).
REFUSED = [
    (lambda: (_conv(), layers.BatchNorm2d(4), IFNode()),
     "BatchNorm2d '1' sits between layer '0' and its neuron"),
    (lambda: (_conv(), IFNode(v_reset=-0.5)), "neuron '1' resets to v_reset=-0.5"),
    (lambda: (_conv(), AdaptiveLIFNode()), "'1' after layer '0' is a ALIFNode"),
    (lambda: (layers.Conv2d(2, 4, 3), IFNode()), "layer '0''s bias is not on the grid"),
    (lambda: (_conv(), IFNode(v_threshold=0.3, v_reset=None)), "neuron '1' has a soft reset"),
    (lambda: (_conv(), IFNode(), layers.Flatten(), layers.Linear(144, 3, bias=False)),
     "no spiking neuron follows layer '3'"),
    (lambda: (_conv(), IFNode(), layers.AvgPool2d(2), layers.Conv2d(4, 4, 3, bias=False),
              IFNode()), "the input of layer '3' is not integers"),
]  # fmt: skip


def _refused(model, x, match, **kwargs):
    with pytest.raises(ConfigurationError, match=match):
        quant.fold_weight_scales(model.eval(), x, **kwargs)


def test_inexact_folds_are_refused_by_name():
    x = torch.randint(0, 3, (2, 2, 2, 8, 8)).double()
    small = nn.Sequential(layers.Conv2d(2, 4, 3, bias=False), IFNode(), layers.Flatten(),
                          layers.Linear(4 * 36, 3, bias=False), IFNode()).double()  # fmt: skip
    _refused(small, x, r"layer '0' \(Conv2d\) is not quantized")
    quant.apply_weight_quantization(small, 4)
    _refused(small, x, "the input of layer '0' is not integers")
    _refused(small, x + 0.5, "not whole numbers", integer_input=True)

    def quantized(*modules):
        net = nn.Sequential(*modules).double()
        quant.apply_weight_quantization(net, 4, per_channel=False)
        return net

    for modules, match in REFUSED:
        _refused(quantized(*modules()), x, match, integer_input=True)
    per_channel = nn.Sequential(layers.Conv2d(2, 4, 3, bias=False), layers.Flatten(),
                                IFNode()).double()  # fmt: skip
    quant.apply_weight_quantization(per_channel, 4)
    match = "scale per channel and a flatten before neuron '2'"
    _refused(per_channel, x, match, integer_input=True)
    membrane = quantized(layers.Conv2d(2, 4, 3, bias=False), IFNode())
    quant.apply_membrane_quantization(membrane, 8)
    _refused(membrane, x, "neuron '1' has a quantized membrane", integer_input=True)


def test_an_input_quantizer_on_a_later_layer_joins_that_layer_s_scale(nmnist_batch):
    # Its levels k replace k·s_x in the folded net, so s_x must join that layer's scale
    # (it was left out: the second layer's thresholds were off by s_x).
    model = _net(lambda: IFNode(v_threshold=0.5))
    quant.apply_weight_quantization(model, 4, method="lsq")
    quant.apply_input_quantization(model, 3, layer=model[4], step=0.75)
    reference = _spikes(model.eval(), nmnist_batch)
    folded, report = quant.fold_weight_scales(model, nmnist_batch, integer_input=True)
    _, w_step = quant.integer_weights(model[4])
    assert torch.equal(report[1].scale, (0.75 * w_step.double()).reshape(-1, 1, 1))
    spikes = _spikes(folded, nmnist_batch)
    assert float(reference[1].mean()) > 0.001
    assert all(torch.equal(a, b) for a, b in zip(reference, spikes))


class _Functional(nn.Module):
    """Two quantized conv layers with a step of the forward between them: ``"residual"``
    adds the first layer's spikes to the second layer's sum, ``"scaled"`` halves that
    sum (``"in_place"``: in place), ``"average"`` average-pools the spikes (functionally)
    before the second layer."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.conv1, self.if1 = _conv_same(), IFNode(v_threshold=0.5)
        self.conv2, self.if2 = _conv_same(), IFNode(v_threshold=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.if1(self.conv1(x))
        if self.step == "average":
            y = torch.nn.functional.avg_pool2d(y.flatten(0, 1), 3, 1, 1).reshape(y.shape)
        h = self.conv2(y)
        h = h + y if self.step == "residual" else h * 0.5 if self.step == "scaled" else h
        if self.step == "in_place":
            h.mul_(0.5)
        return self.if2(h)


def _conv_same() -> nn.Module:
    return layers.Conv2d(2, 2, 3, padding=1, bias=False)


@pytest.mark.parametrize(
    "step,match",
    [("residual", "IFNode 'if2' does not take the output of 'conv2' as it is"),
     ("scaled", "IFNode 'if2' does not take the output of 'conv2' as it is"),
     ("in_place", "IFNode 'if2' does not take the output of 'conv2' as it is"),
     ("average", "the input of layer 'conv2' is not integers")],
)  # fmt: skip
def test_steps_of_the_forward_between_modules_are_refused(nmnist_batch, step, match):
    # These nets folded without a word before, and fired other spikes than the original.
    nets = []
    for kind in (step, "none"):  # the same weights, with and without the step
        torch.manual_seed(0)
        nets.append(_Functional(kind).double())
        quant.apply_weight_quantization(nets[-1], 4, method="lsq")
    model, plain = nets
    _refused(model, nmnist_batch, match, integer_input=True)
    folded, _ = quant.fold_weight_scales(plain.eval(), nmnist_batch, integer_input=True)
    assert torch.equal(folded(nmnist_batch), plain(nmnist_batch))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_threshold_on_the_grid_of_the_steps_ties_and_is_refused(nmnist_batch, dtype):
    # θ = 5·s: a membrane of 5 units equals the threshold in real arithmetic, and the
    # float network decides each such tie by its rounding error: 596 of the first
    # layer's 21480 spikes (float32; 650 in float64) differed from the folded net's, and
    # folding did not say so.
    def net(step: float) -> nn.Sequential:
        torch.manual_seed(0)
        model = _net(lambda: IFNode(v_threshold=5 * step)).to(dtype)
        quant.apply_weight_quantization(model, 4, method="lsq", per_channel=False)
        for layer in (model[0], model[4], model[9]):
            layer.parametrizations.weight[0].step.data.fill_(step)
        return model.eval()

    x = nmnist_batch.to(dtype)
    _refused(net(0.1), x, r"neuron '2' fires \d+ of \d+ spikes otherwise", integer_input=True)
    folded, report = quant.fold_weight_scales(net(0.1), x, integer_input=True, verify=False)
    assert report[0].threshold == torch.ceil(torch.tensor(0.5) / report[0].scale)
    exact = net(0.0625)  # a power of two: k·s and the sums are exact, no tie is misjudged
    folded, _ = quant.fold_weight_scales(exact, x, integer_input=True)
    reference, spikes = _spikes(exact, x), _spikes(folded, x)
    assert float(reference[0].mean()) > 0.001
    assert all(torch.equal(a, b) for a, b in zip(reference, spikes))


def test_a_container_reshaping_a_layer_s_output_folds(nmnist_batch):
    # (a reshape or view of the layer's output is no step between it and its neuron)
    torch.manual_seed(0)
    conv = layers.SeqToANNContainer(nn.Conv2d(2, 4, 3, padding=1, bias=False))
    model = nn.Sequential(conv, IFNode(v_threshold=0.5)).double()
    quant.apply_weight_quantization(model, 4, method="lsq")
    folded, report = quant.fold_weight_scales(model.eval(), nmnist_batch, integer_input=True)
    assert [(r.layer, r.neuron) for r in report] == [("0.0", "1")]
    with torch.no_grad():
        spikes, reference = folded(nmnist_batch), model(nmnist_batch)
    assert float(spikes.mean()) > 0.001 and torch.equal(spikes, reference)
