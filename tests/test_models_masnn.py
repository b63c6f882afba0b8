"""MA-SNN and Att-MS-ResNet: against SpikingJelly 2.0's ``model.MASNN`` and
``model.AttMSResNet`` with their weights (outputs, input and parameter gradients,
batch-norm statistics), their parameter counts and names, the authors' neurons and
initialisation, argument and input errors, and a `spikeflow train` run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.masnn import MASNN, AttMSResNet
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import Rect

F64 = dict(rtol=1e-10, atol=1e-12)
TINY = dict(T=4, num_classes=3, in_channels=2, input_size=(8, 8), channels=(4, 8),
            pools=(1, 2), fc_hidden=8, reduction_t=1, reduction_c=2)  # fmt: skip


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's MA-SNN module and functional (the tests using it skip without it)."""
    model = pytest.importorskip(
        "spikingjelly.activation_based.model.masnn", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional

    return model, functional


def _firing_norms(model: nn.Module, seed: int) -> None:
    """Batch norms that make the neurons fire in eval mode too: small running variances
    and positive shifts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.02 + 0.01)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 1.5)


@pytest.mark.parametrize("training", [False, True])
def test_equals_spikingjelly_with_its_weights(sj, float64, training):
    """SpikingJelly's model (its default neurons, the authors') with its random weights,
    loaded as they are: the same outputs (the time-mean of our spikes), input gradients,
    parameter gradients (every one non-zero) and, in training mode, running statistics."""
    model, functional = sj
    theirs = model.MASNN(**TINY)
    ours = create_model("masnn_dvs128_gesture", **TINY)
    _firing_norms(theirs, 1)
    theirs.train(training)
    ours.train(training)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    functional.reset_net(theirs)
    x = (torch.rand(4, 2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert y2.shape == (4, 2, 3) and 0 < float(y2.detach().mean()) < 1
    assert set(y2.unique().tolist()) <= {0.0, 1.0}  # spikes
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    expected = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name].grad, **F64, msg=name)
        assert p.grad.abs().sum() > 0, name
    buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], **F64, msg=name)


def test_parameter_count_and_names_are_spikingjellys(sj):
    """The DVS128 Gesture model (60 steps of 32x32 frames) has SpikingJelly's 2,340,535
    parameters under its names and shapes (built on the meta device)."""
    model, _ = sj
    with torch.device("meta"):
        ours, theirs = create_model("masnn_dvs128_gesture"), model.masnn_dvs128_gesture()
    assert sum(p.numel() for p in ours.parameters()) == 2_340_535
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert ours.T == 60 and ours.input_size == (32, 32)
    assert ours.fc_blocks[0].linear.in_features == 128 * 8 * 8
    assert [b.pool is None for b in ours.conv_blocks] == [True, False, False]


def test_the_authors_neuron_and_a_neuron_chosen_by_name():
    """LIF with a decay of 0.3 (tau 10/7) of the membrane only, threshold 0.3, a detached
    reset and a rectangular surrogate of width 2; ``neuron_kwargs`` override it."""
    model = create_model("masnn_dvs128_gesture", **TINY)
    neurons = [m for m in model.modules() if isinstance(m, LIFNode)]
    assert len(neurons) == 4
    for n in neurons:
        assert n.tau == pytest.approx(10 / 7) and n.v_threshold == 0.3
        assert n.detach_reset and not n.decay_input
        assert isinstance(n.surrogate_function, Rect) and n.surrogate_function.alpha == 2.0
    x = torch.tensor([[0.2], [0.2], [0.0], [0.3]])  # [T, 1]: 0.2, 0.26 -> 0.078, 0.3234
    torch.testing.assert_close(neurons[0](x).flatten(), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    plif = create_model("masnn_dvs128_gesture", neuron="plif",
                        neuron_kwargs={"v_threshold": 0.5}, **TINY)  # fmt: skip
    assert [type(m).__name__ for m in plif.modules() if hasattr(m, "v_threshold")] == [
        "ParametricLIFNode"
    ] * 4
    assert all(m.v_threshold == 0.5 for m in plif.modules() if hasattr(m, "v_threshold"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": (4, 8), "pools": (1,)}, r"channels \(2\) and pools \(1\) must have one "),
        ({"input_size": 30}, r"input_size \(30, 30\) must be divisible by the pools"),
        ({"input_size": (32, 32, 2)}, r"input_size must be \(H, W\), got \(32, 32, 2\)"),
        ({"pools": (1, 0, 2)}, r"pools\[1\] must be a positive integer"),
        ({"channels": ()}, r"channels must be a non-empty sequence"),
        ({"T": 0}, r"T must be a positive integer"),
        ({"T": 4}, r"reduction_t \(5\) must be at most T \(4\)"),
        ({"zero_init_residual": True}, "zero_init_residual is not supported"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        create_model("masnn_dvs128_gesture", **kwargs)


def test_bad_inputs_are_named_with_their_shape():
    model = create_model("masnn_dvs128_gesture", **TINY)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(2, 2, 8, 8\)"):
        model(torch.rand(2, 2, 8, 8))
    with pytest.raises(ShapeError, match=r"built for T = 4 steps of \(8, 8\) frames, got shape "
                                         r"\(5, 1, 2, 8, 8\)"):  # fmt: skip
        model(torch.rand(5, 1, 2, 8, 8))
    with pytest.raises(ShapeError, match=r"\(8, 8\) frames, got shape \(4, 1, 2, 16, 16\)"):
        model(torch.rand(4, 1, 2, 16, 16))
    assert isinstance(model, MASNN)


def test_spikeflow_train_runs_it_on_the_digits(tmp_path):
    """`spikeflow train --model masnn_dvs128_gesture` with small sizes: the run's ``T``
    and the dataset's channel and 8x8 size reach the model, one epoch runs, the loss is
    finite and the parameters change."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from spikeflow.training import Trainer
    from train_runs import tiny

    sizes = {"channels": [4, 8], "pools": [1, 2], "fc_hidden": 16, "reduction_t": 2,
             "reduction_c": 2}  # fmt: skip
    config = tiny(tmp_path, "run", model="masnn_dvs128_gesture", loss="ce", epochs=1, lr=3e-3,
                  train_samples=32, test_samples=16, batch_size=16, T=4,
                  model_kwargs=sizes)  # fmt: skip
    torch.manual_seed(config.seed)  # as the trainer seeds before building the model
    initial = create_model("masnn_dvs128_gesture", num_classes=10, in_channels=1,
                           input_size=8, T=4, **sizes).state_dict()  # fmt: skip
    trainer = Trainer(config, log=None)
    result = trainer.fit()
    model = trainer.raw_model
    assert model.input_size == (8, 8) and model.conv_blocks[0].conv.in_channels == 1
    assert model.T == 4  # -T, not the builder's default of 60
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    assert initial.keys() == model.state_dict().keys()
    for key in ("conv_blocks.0.conv.weight", "fc_blocks.1.linear.weight"):
        assert not torch.equal(model.state_dict()[key], initial[key]), key


@pytest.mark.parametrize("training", [False, True])
def test_att_ms_resnet_equals_spikingjellys(sj, float64, training):
    """Att-MS-ResNet with 3 stages of one block, SpikingJelly's weights and state dict
    as they are (no dropout: its mask is drawn per sample once, ours once for all steps):
    outputs (time-mean), gradients and running statistics equal."""
    model, functional = sj
    theirs = model.AttMSResNet(T=2, num_classes=3, layers=(1, 1, 1), base_channels=8,
                               reduction_c=2, dropout=0.0)  # fmt: skip
    ours = AttMSResNet((1, 1, 1), num_classes=3, base_width=8, reduction_c=2, dropout=0.0)
    _firing_norms(theirs, 1)
    theirs.train(training)
    ours.train(training)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    functional.reset_net(theirs)
    x = torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert y2.shape == (2, 2, 3)
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    expected = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name].grad, **F64, msg=name)
        assert p.grad.abs().sum() > 0, name
    buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], **F64, msg=name)


def test_att_ms_resnet18_is_spikingjellys_and_starts_as_the_authors(sj):
    """att_ms_resnet18: SpikingJelly's 11,867,960 parameters under its names and shapes;
    the batch norms start at 0.5 (each block's last at 0.1), the neurons are LIF with a
    decay of 0.25, threshold 0.5, a rectangular surrogate of width 1."""
    model, _ = sj
    with torch.device("meta"):
        ours, theirs = create_model("att_ms_resnet18"), model.att_ms_resnet18()
    assert sum(p.numel() for p in ours.parameters()) == 11_867_960
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    small = AttMSResNet((1, 1, 1), base_width=8)
    for name, m in small.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == (0.1 if name.endswith("bn2") else 0.5)), name
    neurons = [m for m in small.modules() if isinstance(m, LIFNode)]
    assert len(neurons) == 2 * 3 + 1
    for n in neurons:
        assert n.tau == pytest.approx(4 / 3) and n.v_threshold == 0.5 and not n.decay_input
        assert isinstance(n.surrogate_function, Rect) and n.surrogate_function.alpha == 1.0
    assert small.dropout.p == 0.2 and small.eval()(torch.rand(1, 1, 3, 9, 5)).shape == (1, 1, 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depths": (1, 1)}, r"depths must have 3 or 4 stages, got 2"),
        ({"depths": (1, 0, 1)}, r"AttMSResNet: depths\[1\] must be a positive integer"),
        ({"base_width": 0}, r"AttMSResNet: base_width must be a positive integer"),
        ({"reduction_c": 16, "base_width": 8}, r"reduction_c \(16\) must be at most C \(8\)"),
        ({"zero_init_residual": True}, "zero_init_residual is not supported"),
    ],
)
def test_att_ms_resnet_bad_arguments_and_inputs_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        AttMSResNet(**kwargs)
    model = AttMSResNet((1, 1, 1), base_width=8)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]; got shape \(2, 3, 8, 8\)"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"H, W >= 1, got shape \(1, 1, 3, 0, 8\)"):
        model(torch.rand(1, 1, 3, 0, 8))
