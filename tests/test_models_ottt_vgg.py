"""OTTT's spiking VGG: against SpikingJelly 2.0's ``model.spiking_vggws_ottt`` with its
weights loaded as they are (outputs, input and parameter gradients by BPTT; OTTT's
online gradients through spikeflow's presynaptic traces), its builders' tensors and
parameter counts, and argument and input errors."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import get_loss
from spikeflow.models import create_model, model_arguments
from spikeflow.models.ottt_vgg import OTTTSpikingVGG, Scale
from spikeflow.neurons import LIFNode
from spikeflow.training.online import online_backward

F64 = dict(rtol=1e-10, atol=1e-12)
#: A small configuration (SpikingJelly's classifiers take 512 features).
TINY = [4, "A", 8, "A", 512]
#: SpikingJelly's OTTT LIF as a plain (BPTT) LIFNode.
SJ_LIF = dict(tau=2.0, decay_input=False, v_reset=None, detach_reset=True)
BUILDERS = ["ottt_spiking_vggws"] + [
    f"ottt_spiking_vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_ws")
]


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's OTTT VGG module and its neuron and functional modules."""
    model = pytest.importorskip(
        "spikingjelly.activation_based.model.spiking_vggws_ottt",
        reason="SpikingJelly is not installed",
    )
    from spikingjelly.activation_based import functional, neuron

    return types.SimpleNamespace(model=model, neuron=neuron, functional=functional)


def _firing(model: nn.Module) -> None:
    """Gains and biases that make every layer fire at T = 3 (in place)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gain"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 2 + 0.5)
            elif name.endswith("bias") and name.startswith("features"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.6)


def _steps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's single-step model over a sequence, one call per step."""
    return torch.stack([model(x[t]) for t in range(x.shape[0])])


def _check_bptt(theirs, ours, sj, x, check_reached=True) -> None:
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = _steps(theirs, x1), ours(x2)
    sj.functional.reset_net(theirs)
    assert y2.abs().sum() > 0
    torch.testing.assert_close(y2, y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)
        assert not check_reached or p.grad.abs().sum() > 0, name  # the case reaches it


@pytest.mark.parametrize("ws", [True, False])
def test_equals_spikingjelly_light_classifier_by_bptt(sj, float64, ws):
    """SpikingJelly's model with its OTTT LIF as a plain LIFNode (BPTT), its random
    weights loaded as they are: the same outputs per step, input and parameter gradients."""
    theirs = sj.model.OTTTSpikingVGG(TINY, ws, num_classes=5, spiking_neuron=sj.neuron.LIFNode,
                                     **SJ_LIF)  # fmt: skip
    _firing(theirs)
    ours = OTTTSpikingVGG(TINY, ws, num_classes=5)
    _check_bptt(theirs, ours, sj, torch.rand(3, 2, 3, 4, 4) * 3)
    assert [type(m) for m in ours.features if isinstance(m, Scale)] == [Scale] * (3 if ws else 0)


@pytest.mark.parametrize("ws", [True, False])
def test_equals_spikingjelly_large_classifier(sj, float64, monkeypatch, ws):
    """The torchvision classifier (pool, FC, SN, scale, dropout, twice, FC), with
    SpikingJelly's hidden width 4096 made 16 and its 7x7 pool 1x1 for the test (its
    ``layer`` module's Linear and pool layers built smaller; its code otherwise as it is),
    in eval mode (dropout off)."""
    sjl = sj.model.layer

    sizes = {4096: 16, 512 * 7 * 7: 512}

    def small(cls):
        class Small(cls):
            def __init__(self, i, o, *args, **kwargs):
                super().__init__(sizes.get(i, i), sizes.get(o, o), *args, **kwargs)

        return Small

    def pool(size):
        return sjl.AdaptiveAvgPool2d((1, 1) if size == (7, 7) else size)

    patched = types.SimpleNamespace(**{k: getattr(sjl, k) for k in dir(sjl) if k[0] != "_"})
    patched.Linear, patched.WSLinear = small(sjl.Linear), small(sjl.WSLinear)
    patched.AdaptiveAvgPool2d = pool
    monkeypatch.setattr(sj.model, "layer", patched)
    theirs = sj.model.OTTTSpikingVGG([8, "M", 512], ws, num_classes=4, light_classifier=False,
                                     spiking_neuron=sj.neuron.LIFNode, **SJ_LIF)  # fmt: skip
    monkeypatch.undo()
    _firing(theirs)
    with torch.no_grad():  # hidden layers that fire from the 7x7 pooled features
        theirs.classifier[2].weight.mul_(1.0 if ws else 100.0)
        theirs.classifier[6].weight.mul_(1.0 if ws else 100.0)
    ours = OTTTSpikingVGG([8, "M", 512], ws, num_classes=4, light_classifier=False,
                          hidden_features=16, pool_size=1).eval()  # fmt: skip
    theirs.eval()
    _check_bptt(theirs, ours, sj, torch.rand(2, 2, 3, 2, 2) * 3)
    assert ours.classifier[4].scale == (2.74 if ws else 1.0)


def test_ottt_online_gradients_equal_spikingjellys_past_the_first_layer(sj, float64):
    """SpikingJelly's OTTT (its OTTTLIFNode, OTTTSequential: a backward per step, the
    weights learning from the neurons' traces) against spikeflow's online training with
    presynaptic traces of decay 0.5 = 1 - 1/tau: the same outputs, and the same gradients
    but for the first layer's weight and gain (SpikingJelly's learns from the input at
    each step, spikeflow's from the input's trace). Average pools only: SpikingJelly
    max-pools a trace, spikeflow traces the max-pooled spikes."""
    theirs = sj.model.OTTTSpikingVGG(TINY, True, num_classes=5,
                                     spiking_neuron=sj.neuron.OTTTLIFNode)  # fmt: skip
    _firing(theirs)
    ours = OTTTSpikingVGG(TINY, True, num_classes=5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(3, 4, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 3
    y = torch.tensor([0, 3, 1, 4])
    result = online_backward(ours, x, y, get_loss("ce"), trace_decay=0.5)
    outs = []
    for t in range(x.shape[0]):  # the authors' loop: one backward per step
        out = theirs(x[t])
        (nn.functional.cross_entropy(out, y) / x.shape[0]).backward()
        outs.append(out.detach())
    sj.functional.reset_net(theirs)
    torch.testing.assert_close(result.output, torch.stack(outs), **F64)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert p.grad.abs().sum() > 0, name
        if name in ("features.0.weight", "features.0.gain"):
            assert not torch.allclose(p.grad, q.grad), name
        else:
            torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)


def test_builders_have_spikingjellys_tensors_and_neurons(sj):
    """Each builder's state dict has SpikingJelly's names and shapes, in its order (built
    on the meta device: no memory, no initialisation); VGG-11-WS has its 132.9M
    parameters; the default neuron is the OTTT LIF."""
    for name in BUILDERS:
        with torch.device("meta"):
            theirs = getattr(sj.model, name)(num_classes=10).state_dict()
            ours = create_model(name, num_classes=10).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == v.shape for k, v in theirs.items()), name
    with torch.device("meta"):
        vgg11 = create_model("ottt_spiking_vgg11_ws")
    assert sum(p.numel() for p in vgg11.parameters()) == 132_874_280
    neuron = create_model("ottt_spiking_vggws", num_classes=3).features[1]
    assert isinstance(neuron, LIFNode) and neuron.v_reset is None and not neuron.decay_input
    assert neuron.detach_reset and neuron.tau == 2.0 and neuron.v_threshold == 1.0


def test_arguments_and_input_errors_are_named():
    assert "fc_hw" in model_arguments("ottt_spiking_vggws")
    assert "weight_standardization" not in model_arguments("ottt_spiking_vgg11")
    for kwargs, message in [
        ({"config": "Z"}, "unknown config 'Z'; available: A, B, D, E, S"),
        ({"config": [8, "P"]}, "entries must be positive widths, 'M' or 'A', got 'P'"),
        ({"config": ["M", "A"]}, r"config \['M', 'A'\] has no convolution"),
        ({"drop_rate": 1.0}, "drop_rate must be"),
        ({"fc_hw": 0}, "fc_hw must be a positive integer, got 0"),
        ({"zero_init_residual": True}, "no residual blocks"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            OTTTSpikingVGG(**kwargs)
    model = OTTTSpikingVGG(TINY, num_classes=3)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(2, 3, 4, 4\) "
                                         r"\(missing the time dimension\?\)"):  # fmt: skip
        model(torch.rand(2, 3, 4, 4))
    with pytest.raises(ShapeError, match="built for 3 input channels"):
        model(torch.rand(2, 1, 2, 8, 8))
    assert model(torch.rand(2, 1, 3, 8, 8)).shape == (2, 1, 3)
    two = OTTTSpikingVGG(TINY, in_channels=2, num_classes=3, drop_rate=0.2, fc_hw=2)
    assert two(torch.rand(2, 1, 2, 8, 8)).shape == (2, 1, 3)
    assert two.classifier[2].in_features == 512 * 4


def test_an_input_too_small_for_the_pools_is_named(tmp_path):
    """Each "M" or "A" halves the maps: VGG-11's five pools need a side of 32. It was a
    bare RuntimeError of torch's max pool at the first training step, after the run's
    folder was written; the zoo passes the dataset's input_size, checked at build."""
    assert "input_size" in model_arguments("ottt_spiking_vgg11")
    with pytest.raises(ConfigurationError, match=r"input_size 16 is too small for its 5 2x2 "
                                                 r"pools \(each halves the input: a side of "
                                                 r"at least 32"):  # fmt: skip
        create_model("ottt_spiking_vgg11", input_size=16, hidden_features=4)
    with pytest.raises(ConfigurationError, match=r"input_size \(8, 4\) is too small for its 3"):
        create_model("ottt_spiking_vggws", input_size=(8, 4))
    with pytest.raises(ConfigurationError, match=r"^input_size must be a positive integer, got 0"):
        create_model("ottt_spiking_vggws", input_size=(8, 0))
    assert OTTTSpikingVGG(TINY, input_size=(8, 4)).pools == 2
    model = OTTTSpikingVGG(TINY, num_classes=3)  # no input_size: checked at the call
    with pytest.raises(ShapeError, match=r"the input's 8x2 maps are too small for its 2 2x2 "
                                         r"pools \(a side of at least 4"):  # fmt: skip
        model(torch.rand(1, 1, 3, 8, 2))
    from spikeflow.cli import main

    line = ["train", "--dataset", "digits", "--model", "ottt_spiking_vgg11",
            "--output-dir", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(line) != 0
    assert not (tmp_path / "run").exists()
