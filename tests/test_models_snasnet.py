"""SNASNet: against SpikingJelly 2.0's ``model.SNASNet`` (forward and backward cells)
with its weights loaded as they are (outputs, input and parameter gradients, batch-norm
statistics per step), its presets' tensors, and argument and input errors."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.snasnet import SNASNet

F64 = dict(rtol=1e-10, atol=1e-12)
#: Every operation on some edge: forward edges (upper triangle) and backward ones (lower).
CON_MAT = [[0, 3, 2, 4], [3, 0, 1, 3], [2, 4, 0, 3], [0, 2, 3, 0]]
#: SpikingJelly's CIFAR-100 widths made small for the tests (its layers built smaller).
SMALL = {128: 8, 256: 16, 256 * 8 * 8: 16 * 8 * 8, 1024: 64}


@pytest.fixture(scope="module")
def sj():
    module = pytest.importorskip(
        "spikingjelly.activation_based.model.snas_net", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional

    return types.SimpleNamespace(module=module, functional=functional)


def _theirs(sj, monkeypatch, cell_type: str) -> nn.Module:
    """SpikingJelly's CIFAR-100 SNASNet (T = 3), its widths 128, 256, 1024 made 8, 16, 64
    (its ``nn`` module's Conv2d, BatchNorm2d and Linear built smaller; its code otherwise
    as it is), dropout off."""

    def small(cls, count):
        class Small(cls):
            def __init__(self, *args, **kwargs):
                args = [SMALL.get(a, a) if i < count else a for i, a in enumerate(args)]
                super().__init__(*args, **kwargs)

        return Small

    patched = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn) if k[0] != "_"})
    patched.Conv2d, patched.Linear = small(nn.Conv2d, 2), small(nn.Linear, 2)
    patched.BatchNorm2d = small(nn.BatchNorm2d, 1)
    monkeypatch.setattr(sj.module, "nn", patched)
    args = types.SimpleNamespace(dataset="cifar100", timestep=3, second_avgpooling=2,
                                 celltype=cell_type, threshold=1.0, tau=4.0 / 3.0)  # fmt: skip
    model = sj.module.SNASNet(args, np.array(CON_MAT))
    monkeypatch.undo()
    model.classifier[0].p = 0.0
    with torch.no_grad():  # a hidden layer that fires (its weights start at std 0.01)
        model.classifier[1].weight.mul_(100.0)
    return model.double()


@pytest.mark.parametrize("cell_type", ["forward", "backward"])
def test_equals_spikingjelly_with_its_weights(sj, monkeypatch, cell_type):
    """In training mode (batch statistics per step): the same outputs (the time-mean of
    ours), input and parameter gradients, and running statistics, but the stem's, which
    take T updates here (one per step) and one there (the static image once): hand-derived
    from SpikingJelly's."""
    theirs = _theirs(sj, monkeypatch, cell_type).train()
    ours = create_model("snasnet_cifar100", con_mat=CON_MAT, cell_type=cell_type,
                        first_channels=8, classifier_hidden=64, dropout=0.0)  # fmt: skip
    ours = ours.double().train()
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2
    x1 = image.clone().requires_grad_(True)
    x2 = image.clone().requires_grad_(True)
    y1 = theirs(x1)
    sj.functional.reset_net(theirs)
    y2 = ours(x2.expand(3, *image.shape))
    assert y2.shape == (3, 2, 100) and y1.abs().sum() > 0
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)
        assert p.grad.abs().sum() > 0 or name.endswith(".bias"), name  # reached
    theirs_buffers = dict(theirs.named_buffers())
    decay = 0.9**3  # momentum 0.1, three updates here, one there
    for name, buffer in ours.named_buffers():
        expected = theirs_buffers[name]
        if name == "stem.1.running_mean":  # from 0
            expected = expected / 0.1 * (1 - decay)
        elif name == "stem.1.running_var":  # from 1
            expected = decay + (expected - 0.9) / 0.1 * (1 - decay)
        elif name == "stem.1.num_batches_tracked":
            expected = expected * 3
        torch.testing.assert_close(buffer, expected, **F64, msg=name)


def test_presets_have_spikingjellys_tensors(sj):
    """Each preset's state dict has SpikingJelly's names and shapes for its
    ``args.dataset`` (both cell types; built on the meta device)."""
    for dataset in ("cifar10", "cifar100", "tinyimagenet"):
        for cell_type in ("forward", "backward"):
            args = types.SimpleNamespace(dataset=dataset, timestep=2, second_avgpooling=2,
                                         celltype=cell_type, threshold=1.0, tau=4 / 3)  # fmt: skip
            with torch.device("meta"):
                theirs = sj.module.SNASNet(args, np.array(CON_MAT)).state_dict()
                ours = create_model(f"snasnet_{dataset}", con_mat=CON_MAT,
                                    cell_type=cell_type).state_dict()  # fmt: skip
            assert list(ours) == list(theirs), (dataset, cell_type)
            assert all(ours[k].shape == v.shape for k, v in theirs.items())


def test_neurons_and_a_backward_cell_cannot_stream():
    from spikeflow.functional import streaming
    from spikeflow.neurons import LIFNode

    model = SNASNet(cell_type="backward", first_channels=4, classifier_hidden=8,
                    num_final_neurons=20, input_size=8)  # fmt: skip
    neuron = model.downconv1[1]
    assert isinstance(neuron, LIFNode) and neuron.v_reset == 0.0 and neuron.detach_reset
    assert neuron.tau == pytest.approx(4 / 3) and neuron.v_threshold == 1.0
    x = torch.rand(2, 1, 3, 8, 8)
    assert model(x).shape == (2, 1, 10)
    torch.testing.assert_close(model(x), model(x))  # no state carried between calls
    with streaming(model), pytest.raises(ConfigurationError, match="cannot be streamed"):
        model(x[:1])
    forward = SNASNet(first_channels=4, classifier_hidden=8, num_final_neurons=20, input_size=8)
    with streaming(forward):  # a forward cell streams: the same outputs step by step
        steps = torch.cat([forward(x[t : t + 1]) for t in range(2)])
    torch.testing.assert_close(steps, forward(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"con_mat": [[0, 1], [0, 0]]}, "con_mat must be a 4x4 matrix"),
        ({"con_mat": [[0, 5, 0, 0]] + [[0] * 4] * 3}, "operation codes 0-4 .* got 5"),
        ({"cell_type": "sideways"}, "cell_type must be 'forward' or 'backward'"),
        ({"num_final_neurons": 15}, r"num_final_neurons \(15\) must be a multiple of "
                                    r"num_classes \(10\)"),
        ({"input_size": 3}, "input_size 3 leaves nothing"),
        ({"input_size": (32, 8, 8)}, r"input_size must be a side or \(H, W\)"),
        ({"input_size": (32, 0)}, "SNASNet: input_size must be a positive integer, got 0"),
        ({"first_channels": 0}, "first_channels must be a positive integer"),
        ({"zero_init_residual": True}, "no residual blocks"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        SNASNet(**kwargs)


def test_bad_inputs_are_named():
    model = SNASNet(first_channels=4, classifier_hidden=8, num_final_neurons=20, input_size=8)
    with pytest.raises(ShapeError, match=r"built for 8x8 inputs .* got shape"):
        model(torch.rand(2, 1, 3, 16, 16))
    with pytest.raises(ShapeError, match="missing the time dimension"):
        model(torch.rand(1, 3, 8, 8))
    wide = SNASNet(first_channels=4, classifier_hidden=8, num_final_neurons=20,
                   input_size=(8, 16))  # fmt: skip
    assert wide(torch.rand(2, 1, 3, 8, 16)).shape == (2, 1, 10)
    assert wide.classifier[1].in_features == 8 * 2 * 4


@pytest.mark.parametrize(
    ("stride", "size", "side"),
    [(2, (15, 15), 2), (2, (31, 30), (4, 3)), (2, (7, 9), (1, 1)), (1, (15, 13), (3, 3))],
)
def test_the_classifier_fits_an_odd_input_under_the_stems_stride(stride, size, side):
    """The stem (3x3, padding 1, stride s) gives ⌈H/s⌉, the pools 2 and 2 floor it: a
    15x15 input under stride 2 leaves 8 → 4 → 2 (the classifier was built for
    15 // 8 = 1 and the call failed in torch's matmul; 7 was refused though it leaves 1)."""
    net = SNASNet(first_channels=4, classifier_hidden=8, num_final_neurons=10, in_channels=1,
                  stem_stride=stride, input_size=size)  # fmt: skip
    rows, cols = (side, side) if isinstance(side, int) else side
    assert net.classifier[1].in_features == 8 * rows * cols
    assert net(torch.rand(1, 2, 1, *size)).shape == (1, 2, 10)
    with pytest.raises(ConfigurationError, match=r"input_size \(4, 9\) leaves nothing"):
        SNASNet(stem_stride=2, input_size=(4, 9))
