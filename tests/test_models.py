"""The model zoo: shapes for every model, SEW connections, zero-init, parameter counts."""

from __future__ import annotations

import functools
import sys
import types

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import ce_mean_loss, rate_mse_loss
from spikeflow.models import create_model, list_models, list_neurons, model_arguments
from spikeflow.models.common import NeuronFactory
from spikeflow.models.ms_resnet import MSBasicBlock
from spikeflow.models.psn_seqcifar import image_to_columns
from spikeflow.models.resnet import SpikingBasicBlock, SpikingBottleneck
from spikeflow.models.sew_dvs import SEWDVSBlock
from spikeflow.models.sew_resnet import SEWBasicBlock, SEWBottleneck, sew_connect
from spikeflow.neurons import PSN, IFNode, LIFNode, ParametricLIFNode
from spikeflow.surrogate import ATan, Rect, Sigmoid

RESNETS = [f"{kind}_resnet{d}" for kind in ("spiking", "sew") for d in (18, 34, 50, 101, 152)]
VGGS = [f"spiking_vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
MS = ["ms_resnet18", "ms_resnet34", "ms_resnet104"]
PLIF = [
    "plif_mnist",
    "plif_fashion_mnist",
    "plif_cifar10",
    "plif_nmnist",
    "plif_cifar10dvs",
    "plif_dvsgesture",
]
OTHERS = ["sew_dvsgesture", "sew_cifar10dvs", "psn_seqcifar"]
ALL = RESNETS + VGGS + MS + PLIF + OTHERS
T, B, K = 2, 1, 5


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _small(name: str) -> tuple[dict, torch.Tensor]:
    """Keyword arguments and an input making ``name`` cheap to run."""
    kwargs: dict = {"num_classes": K}
    if name in RESNETS or name in MS:
        kwargs.update(base_width=8)
        return kwargs, torch.rand(T, B, 3, 16, 16)
    if name in VGGS:
        kwargs.update(pool_size=1, hidden_features=16)
        return kwargs, torch.rand(T, B, 3, 32, 32)
    if name == "psn_seqcifar":
        kwargs.update(channels=8)
        return kwargs, torch.rand(32, B, 3, 32)
    sizes = {"plif_mnist": (1, 28), "plif_fashion_mnist": (1, 28), "plif_cifar10": (3, 32)}
    channels, size = sizes.get(name, (2, 34 if name == "plif_nmnist" else 128))
    if name.startswith("plif_"):
        kwargs.update(channels=8)
    return kwargs, torch.rand(T, B, channels, size, size)


# -- registry, neurons ---------------------------------------------------------------------


def test_registry_lists_all_models():
    assert set(ALL) <= set(list_models())
    assert len(set(ALL)) == len(ALL) == 30
    assert "plif_digits" in list_models()  # the default of `spikeflow train`, public too


@pytest.mark.parametrize("name", ALL)
def test_output_shape(name):
    kwargs, x = _small(name)
    model = create_model(name, **kwargs)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (x.shape[0], B, K)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["spiking_resnet18", "sew_resnet50", "ms_resnet18"])
def test_cifar_stem_keeps_resolution(name):
    model = create_model(name, num_classes=K, stem="cifar", base_width=8)
    with torch.no_grad():
        feats = model.forward_features(torch.rand(T, B, 3, 16, 16))
        out = model(torch.rand(T, B, 3, 16, 16))
    assert feats.shape[-2:] == (2, 2)  # 16 -> 16, 8, 4, 2 (the imagenet stem ends at 1x1)
    assert out.shape == (T, B, K)


def test_unknown_neuron_lists_names():
    with pytest.raises(ConfigurationError, match="unknown neuron 'relu'") as info:
        create_model("sew_resnet18", neuron="relu")
    for name in list_neurons():
        assert name in str(info.value)
    assert {"if", "lif", "plif", "psn"} <= set(list_neurons())


def test_unknown_neuron_kwarg_and_model_raise():
    with pytest.raises(ConfigurationError, match="does not accept \\['taux'\\]"):
        create_model("plif_nmnist", neuron_kwargs={"taux": 3.0})
    with pytest.raises(ConfigurationError, match="unknown model"):
        create_model("resnet9000")
    with pytest.raises(ConfigurationError, match="connect function"):
        create_model("sew_resnet18", cnf="OR")
    with pytest.raises(ConfigurationError, match=r"\[0, 1\), got -0.5"):
        create_model("ms_resnet18", dropout=-0.5)  # not silently "no dropout"


def _neurons(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (IFNode, LIFNode, PSN))]


def test_neuron_choice_and_defaults():
    plif = _neurons(create_model("plif_nmnist", channels=4))
    assert len(plif) == 4 and all(type(n) is ParametricLIFNode for n in plif)
    assert all(n.detach_reset and isinstance(n.surrogate_function, ATan) for n in plif)
    assert plif[0].surrogate_function is not plif[1].surrogate_function
    # another neuron keeps the defaults it accepts (detach_reset, ATan), drops init_tau
    lif = _neurons(create_model("plif_nmnist", channels=4, neuron="lif"))
    assert all(type(n) is LIFNode and n.detach_reset and n.tau == 2.0 for n in lif)
    custom = _neurons(
        create_model(
            "sew_resnet18",
            neuron=LIFNode,
            neuron_kwargs={"tau": 3.0, "surrogate_function": {"name": "sigmoid", "alpha": 2}},
        )
    )
    assert all(n.tau == 3.0 and isinstance(n.surrogate_function, Sigmoid) for n in custom)
    assert custom[0].surrogate_function.alpha == 2
    factory = functools.partial(LIFNode, tau=5.0)
    partial_made = _neurons(create_model("plif_nmnist", channels=4, neuron=factory))
    assert all(n.tau == 5.0 and n.detach_reset for n in partial_made)
    psn = _neurons(create_model("psn_seqcifar", channels=4))
    assert len(psn) == 7 and all(isinstance(n, PSN) and n.T == 32 for n in psn)


@pytest.mark.parametrize("neuron", list_neurons())
def test_every_neuron_name_builds_and_runs(neuron):
    extra = {"psn": {"T": T}, "masked_psn": {"T": T, "k": 1}, "sliding_psn": {"k": 2},
             "glif": {"T": T}, "refractory_lif": {"refractory_steps": 1},
             "refractory_cuba_lif": {"refractory_steps": 1}, "dsr_if": {"T": T},
             "refractory_adex_lif": {"refractory_steps": 1}}  # fmt: skip
    model = create_model("plif_nmnist", channels=4, neuron=neuron, neuron_kwargs=extra.get(neuron))
    with torch.no_grad():
        assert model(torch.rand(T, B, 2, 34, 34)).shape == (T, B, 10)


def test_what_a_partial_binds_wins_over_the_models_defaults():
    # The defaults (detach_reset=True, ATan; MS-ResNet's tau and threshold) were passed
    # as call keywords, which override a partial's own.
    sew = _neurons(create_model(
        "sew_resnet18", base_width=8,
        neuron=functools.partial(IFNode, detach_reset=False, surrogate_function=Sigmoid()),
    ))  # fmt: skip
    assert all(not n.detach_reset and isinstance(n.surrogate_function, Sigmoid) for n in sew)
    ms = _neurons(create_model(
        "ms_resnet18", base_width=8, neuron=functools.partial(LIFNode, tau=3.0, v_threshold=1.0)
    ))  # fmt: skip
    assert all(n.tau == 3.0 and n.v_threshold == 1.0 for n in ms)
    # bound by position (was a TypeError: multiple values for 'tau')
    by_position = functools.partial(LIFNode, 3.0)
    positional = _neurons(create_model("ms_resnet18", base_width=8, neuron=by_position))
    assert all(n.tau == 3.0 for n in positional)
    # a Module it binds is copied for each neuron, as those of neuron_kwargs are
    assert len({id(n.surrogate_function) for n in sew}) == len(sew)
    # neuron_kwargs override a keyword it binds; one bound by position is refused
    over = _neurons(create_model("plif_digits", neuron=functools.partial(LIFNode, tau=3.0),
                                 neuron_kwargs={"tau": 5.0}))  # fmt: skip
    assert {n.tau for n in over} == {5.0}
    with pytest.raises(ConfigurationError, match=r"\['tau'\] are bound by position"):
        create_model("plif_digits", neuron=functools.partial(LIFNode, 3.0),
                     neuron_kwargs={"tau": 5.0})  # fmt: skip


class _SingleStepDefault(LIFNode):
    """A neuron class defaulting to single-step mode, as SpikingJelly's do."""

    def __init__(self, step_mode: str = "s", **kwargs) -> None:
        super().__init__(step_mode=step_mode, **kwargs)


class _ForeignIF(nn.Module):
    """Another library's stateful multi-step IF (theta = 1): it keeps its membrane from
    one call to the next until ``reset()``, as SpikingJelly's neurons do."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = step_mode
        self.v = 0.0

    def reset(self) -> None:
        self.v = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = []
        for x_t in x if self.step_mode == "m" else x.unsqueeze(0):
            h = self.v + x_t
            s = (h >= 1.0).to(x.dtype)
            self.v = h * (1 - s)
            spikes.append(s)
        return torch.stack(spikes) if self.step_mode == "m" else spikes[0]


def test_a_neuron_class_defaulting_to_single_step_is_built_multi_step():
    # Built with its own default ('s'), it read [T, B, ...] as one step of a batch.
    assert _neurons(create_model("plif_digits", neuron=_SingleStepDefault))[0].step_mode == "m"
    built = NeuronFactory(_ForeignIF)()
    assert built.step_mode == "m"
    assert built(torch.full((2, 1), 0.6)).flatten().tolist() == [0.0, 1.0]
    # each call is a whole sequence: the same input gives the same spikes
    assert built(torch.full((2, 1), 0.6)).flatten().tolist() == [0.0, 1.0]
    torch.manual_seed(0)
    model = create_model("plif_digits", neuron=_ForeignIF).eval()
    x = torch.rand(4, 2, 1, 8, 8) * 4
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    with pytest.raises(ConfigurationError, match=r"built in step_mode='s'"):
        NeuronFactory(functools.partial(_ForeignIF, step_mode="s"))()
    # streaming would restart it at every chunk: refused
    from spikeflow.errors import StateError
    from spikeflow.functional import set_streaming, streaming

    with pytest.raises(StateError, match=r"another library's neuron, restarted at every call"):
        with streaming(model):
            pass
    with pytest.raises(StateError, match=r"'features\.2' \(_ForeignIF\)"):
        set_streaming(model, True)
    set_streaming(model, False)


def test_plif_digits_and_the_plif_builders_check_their_sizes():
    for bad in ({"num_classes": 0}, {"in_channels": 0}, {"input_size": 0}, {"channels": 0},
                {"hidden": 0}, {"voting_size": 0}):  # fmt: skip
        name = next(iter(bad))
        with pytest.raises(ConfigurationError, match=f"{name} must be a positive integer"):
            create_model("plif_digits", **bad)
    assert create_model("plif_digits", num_classes=3).num_classes == 3
    with pytest.raises(ConfigurationError, match="input_size must be a positive integer"):
        create_model("plif_mnist", input_size=(28, 28))  # was a bare TypeError from //=
    with pytest.raises(ConfigurationError, match="input_size must be a positive integer"):
        create_model("plif_nmnist", input_size="34")


def test_plif_digits_with_real_valued_output_logits():
    """``spiking_output=False`` ends in a plain FC layer: per-step logits (no neuron, no
    voting) that take negative values and follow the last hidden spikes linearly."""
    torch.manual_seed(0)
    model = create_model("plif_digits", spiking_output=False, dropout=0.0).eval()
    last = model.classifier[-1]
    assert isinstance(last, torch.nn.Linear) and last.out_features == 10
    assert not any("Voting" in type(m).__name__ for m in model.modules())
    x = torch.rand(3, 2, 1, 8, 8)
    hidden = []
    last.register_forward_hook(lambda m, args, out: hidden.append(args[0]))
    out = model(x)
    assert out.shape == (3, 2, 10) and (out < 0).any()
    torch.testing.assert_close(out, hidden[0] @ last.weight.T + last.bias)
    with pytest.raises(ConfigurationError, match="spiking_output must be true or false"):
        create_model("plif_digits", spiking_output="no")


def test_neuron_factory_rejects_non_dict():
    with pytest.raises(ConfigurationError, match="neuron_kwargs must be a dict"):
        NeuronFactory("if", neuron_kwargs=[("tau", 2.0)])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="multi-step"):
        NeuronFactory("lif", neuron_kwargs={"step_mode": "s"})


def test_ms_resnet_neuron_matches_authors_lif():
    """u[t] = 0.25 u[t-1] (1 - o[t-1]) + x[t], o = u > 0.5 (the MS-ResNet code)."""
    model = create_model("ms_resnet18", num_classes=K)
    sn = model.layer1[0].sn1
    assert isinstance(sn.surrogate_function, Rect) and sn.strict_firing
    x = torch.randn(6, 3, 50) * 0.6
    x[2, 0, :5] = 0.5  # exactly at threshold from rest: strict firing must stay silent
    u = torch.zeros(3, 50)
    o = torch.zeros(3, 50)
    expected = []
    for t in range(6):
        u = 0.25 * u * (1 - o) + x[t]
        o = (u > 0.5).float()
        expected.append(o)
    torch.testing.assert_close(sn(x), torch.stack(expected))


def test_psn_seqcifar_reads_the_column_length_from_the_dataset():
    # spikeflow train passes the dataset's input_size: the 8x8 digits need no length=8.
    from spikeflow.training import TrainConfig
    from spikeflow.training.build import build_model
    from spikeflow.training.data import DataInfo

    config = TrainConfig(dataset="digits", model="psn_seqcifar", T=8,
                         model_kwargs={"channels": 4}, neuron="psn")  # fmt: skip
    net = build_model(config, DataInfo(10, 1, (8, 8), static=True))
    assert net.length == 8 and net.in_channels == 1
    assert net(torch.rand(8, 2, 1, 8)).shape == (8, 2, 10)
    assert create_model("psn_seqcifar", channels=4).length == 32
    assert create_model("psn_seqcifar", channels=4, input_size=(16, 32)).length == 16
    with pytest.raises(ConfigurationError, match=r"length=32 .* input_size=8 has 8 rows"):
        create_model("psn_seqcifar", channels=4, length=32, input_size=8)
    with pytest.raises(ConfigurationError, match="input_size must be H or"):
        create_model("psn_seqcifar", channels=4, input_size="8")


def test_input_checks():
    model = create_model("sew_resnet18", num_classes=K)
    with pytest.raises(ShapeError, match="missing the time dimension"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ShapeError, match="3 input channels"):
        model(torch.rand(T, B, 2, 16, 16))
    net = create_model("psn_seqcifar", channels=4)
    with pytest.raises(ShapeError, match="length 32"):
        net(torch.rand(32, B, 3, 16))
    assert image_to_columns(torch.rand(4, 3, 32, 30)).shape == (30, 4, 3, 32)
    with pytest.raises(ConfigurationError, match="no residual"):
        create_model("spiking_vgg11", zero_init_residual=True)


# -- SEW connections -----------------------------------------------------------------------


def test_sew_connect_elementwise_on_binary():
    s = torch.tensor([0.0, 0.0, 1.0, 1.0])
    a = torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(sew_connect(s, a, "ADD"), torch.tensor([0.0, 1.0, 1.0, 2.0]))
    torch.testing.assert_close(sew_connect(s, a, "and"), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(sew_connect(s, a, "IAND"), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    with pytest.raises(ShapeError):
        sew_connect(s, a[:2], "ADD")


@pytest.mark.parametrize("block_cls", [SEWBasicBlock, SEWBottleneck])
@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
def test_sew_blocks_connect_identity_and_branch(block_cls, cnf):
    """Both block types compute g(A, S) with S the input spikes: IAND = S * (1 - A)."""
    channels = 8 * block_cls.expansion
    block = block_cls(channels, 8, 1, False, NeuronFactory("if", {"v_threshold": 0.5}), cnf=cnf)
    s = (torch.rand(T, 2, channels, 6, 6) < 0.5).float()
    a = block.branch_spikes(s)
    assert set(a.unique().tolist()) == {0.0, 1.0}  # a non-trivial branch
    expected = {"ADD": a + s, "AND": a * s, "IAND": s * (1 - a)}[cnf]
    torch.testing.assert_close(block(s), expected)


# -- zero-init of the residual BN -----------------------------------------------------------


def _block_inputs(model: nn.Module, x: torch.Tensor, block_types: tuple) -> list:
    seen: list = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0])))
        for m in model.modules()
        if isinstance(m, block_types)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize(
    ("name", "kwargs", "block_types"),
    [
        ("spiking_resnet18", {}, (SpikingBasicBlock,)),
        ("spiking_resnet50", {}, (SpikingBottleneck,)),
        ("sew_resnet18", {"cnf": "ADD"}, (SEWBasicBlock,)),
        ("sew_resnet18", {"cnf": "AND"}, (SEWBasicBlock,)),
        ("sew_resnet18", {"cnf": "IAND"}, (SEWBasicBlock,)),
        ("sew_resnet50", {"cnf": "ADD"}, (SEWBottleneck,)),
        ("sew_resnet50", {"cnf": "AND"}, (SEWBottleneck,)),
        ("sew_resnet50", {"cnf": "IAND"}, (SEWBottleneck,)),
        ("spiking_resnet34", {}, (SpikingBasicBlock,)),
        ("spiking_resnet101", {}, (SpikingBottleneck,)),
        ("sew_resnet152", {"cnf": "ADD"}, (SEWBottleneck,)),
        ("ms_resnet18", {}, (MSBasicBlock,)),
        ("ms_resnet104", {}, (MSBasicBlock,)),
        ("ms_resnet34", {"avgpool_shortcut": True}, (MSBasicBlock,)),
        ("sew_dvsgesture", {"input_size": 128}, (SEWDVSBlock,)),
    ],
)
def test_zero_init_residual_makes_blocks_identity(name, kwargs, block_types):
    if name == "sew_dvsgesture":
        model = create_model(
            name, zero_init_residual=True, neuron="if", neuron_kwargs={"v_threshold": 1.0}, **kwargs
        )
        x = (torch.rand(T, B, 2, 128, 128) < 0.3).float()
    else:
        model = create_model(name, num_classes=K, zero_init_residual=True, base_width=8, **kwargs)
        x = torch.rand(T, B, 3, 16, 16)
    inputs = _block_inputs(model, x, block_types)
    assert len(inputs) >= 4
    identities = 0
    with torch.no_grad():
        for block, inp in inputs:
            branch = block.residual(inp)
            target = 1.0 if getattr(block, "cnf", None) == "AND" else 0.0
            assert torch.equal(branch, torch.full_like(branch, target))
            if getattr(block, "downsample", None) is None:
                identities += 1
                binary = bool(((inp == 0) | (inp == 1)).all())
                if binary or not isinstance(block, (SpikingBasicBlock, SpikingBottleneck)):
                    torch.testing.assert_close(block(inp), inp)
    assert identities >= 2


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sew_dvsgesture", {"input_size": 128, "cnf": "AND"}),  # its default neuron: PLIF
        ("sew_resnet18", {"cnf": "AND", "neuron": "plif", "base_width": 8}),
        ("sew_resnet50", {"cnf": "AND", "neuron": "lif", "base_width": 8}),
    ],
)
def test_zero_init_and_blocks_are_identities_with_leaky_neurons(name, kwargs):
    # A PLIF/LIF with tau = 2 charges to beta / 2 from rest: beta = 1 never fired, so
    # every AND block output 0. beta is now what makes the branch neuron fire each step.
    model = create_model(name, zero_init_residual=True, **kwargs)
    if name == "sew_dvsgesture":
        x = (torch.rand(T, B, 2, 128, 128) < 0.3).float()
        types: tuple[type, ...] = (SEWDVSBlock,)
    else:
        x = torch.rand(T, B, 3, 16, 16)
        types = (SEWBasicBlock, SEWBottleneck)
    checked = 0
    with torch.no_grad():
        for block, inp in _block_inputs(model, x, types):
            if getattr(block, "downsample", None) is None:
                torch.testing.assert_close(block(inp), inp)
                checked += 1
    assert checked >= 2


def test_without_zero_init_the_branch_is_not_zero():
    model = create_model("sew_resnet18", num_classes=K, base_width=8)
    (block, inp), *_ = _block_inputs(model, torch.rand(T, B, 3, 16, 16), (SEWBasicBlock,))
    assert block.residual(inp).abs().sum() > 0
    ms = create_model("ms_resnet18", num_classes=K, zero_init_residual=False)
    assert torch.all(ms.layer1[0].bn2.weight == 0.5)
    assert torch.all(create_model("ms_resnet18").layer1[0].bn1.weight == 0.5)  # tdBN: θ


# -- parameter counts ------------------------------------------------------------------------


def test_parameter_counts_match_spikingjelly(spikingjelly_models):
    """Same layers and one PLIF weight per neuron layer, so the same number of parameters."""
    m = spikingjelly_models
    sj_neuron, sj_sew, sj_spiking = m.neuron, m.sew_resnet, m.spiking_resnet
    plif = sj_neuron.ParametricLIFNode
    for depth in (18, 50):
        ours = create_model(f"sew_resnet{depth}", neuron="plif", cnf="IAND")
        theirs = getattr(sj_sew, f"sew_resnet{depth}")(spiking_neuron=plif, cnf="IAND")
        assert _n_params(ours) == _n_params(theirs)
        shapes = [[v.shape for v in m.state_dict().values()] for m in (ours, theirs)]
        assert shapes[0] == shapes[1]  # the same tensors in the same order
    ours = create_model("spiking_resnet34", neuron="plif", num_classes=10)
    theirs = sj_spiking.spiking_resnet34(spiking_neuron=plif, num_classes=10)
    assert _n_params(ours) == _n_params(theirs)
    assert _n_params(create_model("sew_resnet18")) == 11_689_512  # torchvision resnet18


def _copy_weights_in_order(source: nn.Module, target: nn.Module) -> None:
    src, dst = list(source.state_dict().values()), target.state_dict()
    assert len(src) == len(dst)
    for (key, value), theirs in zip(dst.items(), src):
        assert value.shape == theirs.shape, key
        value.copy_(theirs)


@pytest.mark.parametrize(
    ("kind", "depth", "cnf"),
    [
        ("sew", 18, "ADD"),
        ("sew", 18, "AND"),
        ("sew", 18, "IAND"),
        ("sew", 50, "ADD"),
        ("spiking", 18, None),
        ("spiking", 50, None),
    ],
)
def test_outputs_match_spikingjelly(spikingjelly_models, kind, depth, cnf):
    """Same weights, same input → same output as SpikingJelly's multi-step model.

    (The IAND bottleneck is left out on purpose: SpikingJelly computes A * (1 - S) there,
    spikeflow the paper's S * (1 - A), see methods.md 3.1.)
    """
    from spikingjelly.activation_based import functional

    m = spikingjelly_models
    sj_neuron, sj_sew, sj_spiking = m.neuron, m.sew_resnet, m.spiking_resnet
    torch.manual_seed(1)
    options = {"num_classes": K}
    if kind == "sew":
        ours = create_model(f"sew_resnet{depth}", cnf=cnf, **options)
        theirs = getattr(sj_sew, f"sew_resnet{depth}")(
            spiking_neuron=sj_neuron.IFNode, cnf=cnf, detach_reset=True, **options
        )
    else:
        ours = create_model(f"spiking_resnet{depth}", **options)
        theirs = getattr(sj_spiking, f"spiking_resnet{depth}")(
            spiking_neuron=sj_neuron.IFNode, detach_reset=True, **options
        )
    functional.set_step_mode(theirs, "m")
    with torch.no_grad():
        for bn in (m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            # AND needs branches that fire a lot, or no spike reaches the head
            bn.bias.uniform_(*((0.6, 1.2) if cnf == "AND" else (-0.2, 0.4)))
        theirs.fc.bias.zero_()  # a non-zero output then needs spikes out of the last stage
        _copy_weights_in_order(theirs, ours)
        x = torch.rand(T, 2, 3, 24, 24)
        expected = theirs(x)
        functional.reset_net(theirs)
        got = ours(x)
    torch.testing.assert_close(got, expected)
    assert expected.abs().sum() > 0


@pytest.mark.parametrize("zero_init", [False, True])
def test_spiking_resnet34_gradients_match_spikingjelly(spikingjelly_models, zero_init):
    """Same weights, same input, float64 → the same gradient of every parameter as
    SpikingJelly's multi-step spiking_resnet34 with the paper's neuron (IF, detach_reset,
    ATan): the backward, not only the forward, is SpikingJelly's (the check behind
    docs/models.md's finding that the plain 34-layer net's failure is the method's)."""
    from spikingjelly.activation_based import functional, surrogate

    m = spikingjelly_models
    torch.manual_seed(0)
    ours = create_model("spiking_resnet34", num_classes=K, zero_init_residual=zero_init)
    theirs = m.spiking_resnet.spiking_resnet34(
        spiking_neuron=m.neuron.IFNode, detach_reset=True, surrogate_function=surrogate.ATan(),
        num_classes=K, zero_init_residual=zero_init,
    )  # fmt: skip
    ours, theirs = ours.double(), theirs.double()
    functional.set_step_mode(theirs, "m")
    with torch.no_grad():
        _copy_weights_in_order(theirs, ours)
    generator = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(T, 2, 3, 32, 32, dtype=torch.float64, generator=generator)
    target = torch.tensor([1, 3])
    for model in (theirs, ours):
        nn.functional.cross_entropy(model(x).mean(0), target).backward()
    pairs = list(zip(theirs.parameters(), ours.parameters(), strict=True))
    for (name, _), (expected, got) in zip(ours.named_parameters(), pairs, strict=True):
        torch.testing.assert_close(got.grad, expected.grad, rtol=1e-9, atol=1e-12, msg=name)
    # the gradient reaches the stem (a test that an all-zero backward would not pass)
    assert ours.stem[0].weight.grad.abs().sum() > 0


def test_parameter_counts_by_hand():
    # PLIF N-MNIST: conv(2->128)+BN, conv(128->128)+BN, FC 8192->2048, FC 2048->100 (no
    # biases), one PLIF weight in each of the 4 neuron layers.
    c = 128
    expected = (2 * c * 9 + 2 * c) + (c * c * 9 + 2 * c) + (c * 64 * 2048) + 2048 * 100 + 4
    assert _n_params(create_model("plif_nmnist")) == expected
    # Spiking VGG-11 with BN, 1x1 pool, 64 hidden units, 7 classes; IF has no parameters.
    widths = [64, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(ci * co * 9 + co + 2 * co for ci, co in zip([3, *widths[:-1]], widths))
    fcs = (512 * 64 + 64) + (64 * 64 + 64) + (64 * 7 + 7)
    model = create_model("spiking_vgg11_bn", num_classes=7, pool_size=1, hidden_features=64)
    assert _n_params(model) == convs + fcs
    # SEW Gesture net: conv1x1(2->32)+BN, 7 blocks of 2x (conv3x3 32->32 + BN), FC 32->11;
    # 1 + 14 PLIF weights.
    expected = (2 * 32 + 64) + 7 * 2 * (32 * 32 * 9 + 64) + (32 * 11 + 11) + 15
    assert _n_params(create_model("sew_dvsgesture")) == expected


# -- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "loss"),
    [
        ("plif_nmnist", {"channels": 8}, (4, 2, 2, 34, 34), rate_mse_loss),
        ("sew_resnet18", {"stem": "cifar", "zero_init_residual": True}, (2, 2, 3, 8, 8), None),
        ("spiking_resnet50", {"base_width": 8}, (2, 2, 3, 16, 16), None),
        ("ms_resnet18", {"base_width": 8}, (2, 2, 3, 16, 16), None),
        ("psn_seqcifar", {"channels": 8}, (32, 2, 3, 32), None),
    ],
)
def test_backward_gives_finite_gradients(name, kwargs, shape, loss):
    model = create_model(name, num_classes=10, **kwargs)
    x = torch.rand(shape) * 2
    target = torch.tensor([3, 7])
    out = model(x)
    (loss or ce_mean_loss)(out, target).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = next(m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))
    assert first_conv.weight.grad.abs().sum() > 0


def test_models_use_multi_step_spikeflow_layers():
    """Convs/BNs are spikeflow's time-folding layers and neurons run multi-step (fused)."""
    model = create_model("sew_resnet18")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, layers.Conv2d) and m.step_mode == "m" for m in convs)
    assert all(n.step_mode == "m" and n.backend == "auto" for n in _neurons(model))


def test_docs_example_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/models.md", "exec"), namespace)
    assert namespace["out"].shape == (4, 2, 10)
    assert namespace["loss"].ndim == 0 and namespace["prediction"].shape == (2,)


# -- architectures against methods.md (3.2, 4.5, 6, 11.2) --------------------------------------


def _layout(model: nn.Module) -> list[str]:
    """The leaf layers of ``model`` in registration (= forward) order, as short tokens."""
    tokens = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k, s = m.kernel_size[0], m.stride[0]
            tokens.append(f"conv{m.in_channels}-{m.out_channels}k{k}" + (f"s{s}" if s > 1 else ""))
        elif isinstance(m, nn.Conv1d):
            tokens.append(f"conv1d{m.in_channels}-{m.out_channels}k{m.kernel_size[0]}")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            tokens.append("bn")
        elif isinstance(m, nn.MaxPool2d):
            tokens.append(f"mp{m.kernel_size}")
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            size = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            tokens.append(f"ap{size}")
        elif isinstance(m, nn.Linear):
            tokens.append(f"fc{m.in_features}-{m.out_features}")
        elif isinstance(m, layers.Dropout):
            tokens.append("drop")
        elif isinstance(m, layers.VotingLayer):
            tokens.append("vote")
        elif isinstance(m, (IFNode, LIFNode, PSN)):
            tokens.append("sn")
    return tokens


def _plif_head(flat: int, hidden: int, classes: int, second_dropout: bool = True) -> list[str]:
    return ["drop", f"fc{flat}-{hidden}", "sn", *(["drop"] if second_dropout else []),
            f"fc{hidden}-{10 * classes}", "sn", "vote"]  # fmt: skip


def _unit(c_in: int, c_out: int, k: int = 3) -> list[str]:
    return [f"conv{c_in}-{c_out}k{k}", "bn", "sn"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # {conv3x3(128)-BN-PLIF-MaxPool2} x2 on 28x28, FC 128*7*7 -> 128*4*4 -> 10*10, voting
        ("plif_mnist", [*_unit(1, 128), "mp2", *_unit(128, 128), "mp2",
                        *_plif_head(128 * 7 * 7, 128 * 4 * 4, 10)]),
        ("plif_fashion_mnist", [*_unit(1, 128), "mp2", *_unit(128, 128), "mp2",
                                *_plif_head(128 * 7 * 7, 128 * 4 * 4, 10)]),
        # {conv3x3(256)-BN-PLIF x3 -> MaxPool2} x2 on 32x32, one dropout in the head
        ("plif_cifar10", [*_unit(3, 256), *_unit(256, 256), *_unit(256, 256), "mp2",
                          *_unit(256, 256), *_unit(256, 256), *_unit(256, 256), "mp2",
                          *_plif_head(256 * 8 * 8, 128 * 4 * 4, 10, second_dropout=False)]),
        # n = 2, 4, 5 blocks; FC C*h*w -> C*h*w/4
        ("plif_nmnist", [*_unit(2, 128), "mp2", *_unit(128, 128), "mp2",
                         *_plif_head(128 * 8 * 8, 128 * 8 * 8 // 4, 10)]),
        ("plif_cifar10dvs", [*_unit(2, 128), "mp2", *[*_unit(128, 128), "mp2"] * 3,
                             *_plif_head(128 * 8 * 8, 128 * 8 * 8 // 4, 10)]),
        ("plif_dvsgesture", [*_unit(2, 128), "mp2", *[*_unit(128, 128), "mp2"] * 4,
                             *_plif_head(128 * 4 * 4, 128 * 4 * 4 // 4, 11)]),
        # c32k1-BN-PLIF -> {SEW(32) -> MaxPool2} x7 -> FC(32 -> 11)
        ("sew_dvsgesture", [*_unit(2, 32, 1), *(_unit(32, 32) * 2 + ["mp2"]) * 7, "fc32-11"]),
        # c64k1 -> {SEW(64)-MP2} x4 -> c128k1 -> {SEW(128)-MP2} x3 -> FC(128 -> 10)
        ("sew_cifar10dvs", [*_unit(2, 64, 1), *(_unit(64, 64) * 2 + ["mp2"]) * 4,
                            *_unit(64, 128, 1), *(_unit(128, 128) * 2 + ["mp2"]) * 3,
                            "fc128-10"]),
        # {Conv1d k3 (128)-BN-SN x3 -> AvgPool1d 2} x2 -> FC(1024 -> 256) -> SN -> FC(-> 10)
        ("psn_seqcifar", [*["conv1d3-128k3", "bn", "sn"], *["conv1d128-128k3", "bn", "sn"] * 2,
                          "ap2", *["conv1d128-128k3", "bn", "sn"] * 3, "ap2",
                          "fc1024-256", "sn", "fc256-10"]),
    ],
)  # fmt: skip
def test_paper_networks_have_the_methods_md_layers(name, expected):
    assert _layout(create_model(name)) == expected


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
@pytest.mark.parametrize("bn", [False, True])
def test_vgg_layers_per_depth(depth, bn):
    convs = {11: 8, 13: 10, 16: 13, 19: 16}[depth]
    model = create_model(f"spiking_vgg{depth}{'_bn' if bn else ''}", num_classes=K, pool_size=1,
                         hidden_features=16)  # fmt: skip
    tokens = _layout(model)
    assert sum(t.startswith("conv") for t in tokens) == convs
    assert tokens.count("mp2") == 5 and tokens.count("bn") == (convs if bn else 0)
    widths = [int(t.split("-")[1].split("k")[0]) for t in tokens if t.startswith("conv")]
    assert widths[0] == 64 and widths[-1] == 512 and sorted(set(widths)) == [64, 128, 256, 512]
    assert tokens[-7:] == ["fc512-16", "sn", "drop", "fc16-16", "sn", "drop", f"fc16-{K}"]


@pytest.mark.parametrize(
    ("name", "stages", "block"),
    [
        ("spiking_resnet18", [2, 2, 2, 2], SpikingBasicBlock),
        ("spiking_resnet34", [3, 4, 6, 3], SpikingBasicBlock),
        ("spiking_resnet50", [3, 4, 6, 3], SpikingBottleneck),
        ("spiking_resnet101", [3, 4, 23, 3], SpikingBottleneck),
        ("spiking_resnet152", [3, 8, 36, 3], SpikingBottleneck),
        ("sew_resnet18", [2, 2, 2, 2], SEWBasicBlock),
        ("sew_resnet34", [3, 4, 6, 3], SEWBasicBlock),
        ("sew_resnet50", [3, 4, 6, 3], SEWBottleneck),
        ("sew_resnet101", [3, 4, 23, 3], SEWBottleneck),
        ("sew_resnet152", [3, 8, 36, 3], SEWBottleneck),
        ("ms_resnet18", [2, 2, 2, 2], MSBasicBlock),
        ("ms_resnet34", [3, 4, 6, 3], MSBasicBlock),
        ("ms_resnet104", [3, 8, 32, 8], MSBasicBlock),
    ],
)
def test_resnet_depths_and_stems(name, stages, block):
    model = create_model(name, num_classes=K, base_width=8)
    got = [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)]
    assert got == stages
    assert all(type(b) is block for b in model.blocks())
    stem = _layout(model.stem)
    if name == "ms_resnet104":  # three 3x3 convs (the first with stride 2), then tdBN
        assert stem == ["conv3-8k3s2", "conv8-8k3", "conv8-8k3", "bn"]
        shortcut = _layout(model.layer2[0].downsample)
        assert shortcut == ["ap2", "conv8-16k1", "bn"]  # avgpool2 + conv1x1 + tdBN
    elif name.startswith("ms_"):  # conv7x7/2 + tdBN, no neuron (the branches start with one)
        assert stem == ["conv3-8k7s2", "bn"]
        assert _layout(model.layer2[0].downsample) == ["conv8-16k1s2", "bn"]
    else:  # conv7x7/2-BN-SN-maxpool3x3/2
        assert stem == ["conv3-8k7s2", "bn", "sn", "mp3"]
        shortcut = _layout(model.layer2[0].downsample)
        spiking_shortcut = name.startswith("sew_")  # SEW: conv1x1-BN-SN emits spikes
        width = 16 * block.expansion
        assert shortcut == [f"conv{8 * block.expansion}-{width}k1s2", "bn",
                            *(["sn"] if spiking_shortcut else [])]  # fmt: skip


def test_bottleneck_depths_have_torchvisions_parameter_counts():
    """IF neurons have no parameters, so the counts are torchvision's ResNet-101/152."""
    assert _n_params(create_model("spiking_resnet101")) == 44_549_160
    assert _n_params(create_model("sew_resnet152", cnf="IAND")) == 60_192_808


@pytest.mark.parametrize("name", [*ALL, "plif_digits"])
def test_every_model_takes_the_neuron_and_its_arguments(name):
    kwargs, _ = _small(name) if name != "plif_digits" else ({"num_classes": K}, None)
    model = create_model(name, neuron="lif", neuron_kwargs={"tau": 3.5, "v_threshold": 0.75},
                         **kwargs)  # fmt: skip
    spiking = [m for m in model.modules() if isinstance(m, (IFNode, LIFNode, PSN))]
    assert spiking and all(type(m) is LIFNode for m in spiking)
    assert all(m.tau == 3.5 and m.v_threshold == 0.75 for m in spiking)
    accepted = model_arguments(name)
    common = {"num_classes", "in_channels", "neuron", "neuron_kwargs", "zero_init_residual"}
    assert accepted is not None and common <= set(accepted)


def test_unknown_model_arguments_are_named_with_the_accepted_ones():
    with pytest.raises(ConfigurationError, match=r"'plif_digits' does not accept .*'channelz'"):
        create_model("plif_digits", channelz=3)
    with pytest.raises(ConfigurationError, match=r"\['depths'\]; it accepts base_width, cnf"):
        create_model("sew_resnet18", depths=[1, 1, 1, 1])  # the builder fixes the depths
    assert "batch_norm" not in model_arguments("spiking_vgg11")
    assert create_model("plif_digits", input_size=6).classifier[2].in_features == 32 * 3 * 3
    with pytest.raises(ConfigurationError, match="no residual"):
        create_model("plif_digits", zero_init_residual=True)


def test_neurons_without_defaults_name_the_missing_arguments():
    with pytest.raises(ConfigurationError, match=r"PSN needs the argument\(s\) \['T'\]"):
        create_model("plif_nmnist", channels=4, neuron="psn")
    with pytest.raises(ConfigurationError, match=r"--neuron-kwargs T=\.\.\. k=\.\.\."):
        create_model("plif_nmnist", channels=4, neuron="masked_psn")
    model = create_model("plif_nmnist", channels=4, neuron="psn", neuron_kwargs={"T": 3})
    assert all(m.T == 3 for m in model.modules() if isinstance(m, PSN))


def test_a_builder_with_unreadable_arguments_still_names_a_bad_one(monkeypatch):
    from spikeflow.models import registry

    def opaque(**kwargs):  # no return annotation: its arguments cannot be listed
        return _OpaqueNet(**kwargs)

    monkeypatch.setitem(registry._REGISTRY, "opaque_test_net", opaque)
    assert model_arguments("opaque_test_net") is None
    assert create_model("opaque_test_net", width=3).width == 3
    with pytest.raises(ConfigurationError, match=r"model 'opaque_test_net': .*'widht'"):
        create_model("opaque_test_net", widht=3)


class _OpaqueNet(nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.width = width


def test_and_zero_init_probes_any_neuron_or_says_why_it_cannot():
    # The probe runs the reference loop on the CPU (a Triton neuron builds on a CPU
    # machine) with the neuron's own T (a parallel spiking neuron built for T steps).
    create_model("sew_resnet18", cnf="AND", zero_init_residual=True, base_width=8,
                 neuron="lif", neuron_kwargs={"backend": "triton"})  # fmt: skip
    create_model("sew_resnet18", cnf="AND", zero_init_residual=True, base_width=8,
                 neuron="sliding_psn", neuron_kwargs={"k": 2})  # fmt: skip
    with pytest.raises(ConfigurationError, match="cannot start as its identity"):
        create_model("sew_resnet18", cnf="AND", zero_init_residual=True, base_width=8,
                     neuron="psn", neuron_kwargs={"T": 4})  # fmt: skip
    # a PSN built for more than the short probe's 8 steps is probed with its own T
    with pytest.raises(ConfigurationError, match="cannot start as its identity"):
        create_model("sew_resnet18", cnf="AND", zero_init_residual=True, base_width=8,
                     neuron="psn", neuron_kwargs={"T": 16})  # fmt: skip


def test_and_zero_init_holds_for_an_adaptive_threshold_over_long_sequences():
    # ALIF's threshold rises for tens of steps: the 8-step probe picked beta = 8, which
    # stops firing after step 26, so the blocks were identities only for short inputs.
    model = create_model("sew_dvsgesture", input_size=128, cnf="AND",
                         neuron="alif", zero_init_residual=True)  # fmt: skip
    x = (torch.rand(40, 1, 2, 128, 128) < 0.3).float()
    checked = 0
    with torch.no_grad():
        for block, inp in _block_inputs(model, x, (SEWDVSBlock,)):
            torch.testing.assert_close(block(inp), inp)
            checked += 1
    assert checked >= 2


def test_bool_arguments_refuse_other_types():
    # A string such as 'False' (a config file's "False", a command line's False before
    # it was read as Python's constant) is truthy: it used to keep the batch norms and
    # make the threshold learnable, the opposite of what was asked.
    bad_batch_norm = r"'plif_digits': argument batch_norm must be true or false, got 'False'"
    with pytest.raises(ConfigurationError, match=bad_batch_norm + r" \(str\)"):
        create_model("plif_digits", batch_norm="False")
    with pytest.raises(ConfigurationError, match=r"'sew_resnet18': argument zero_init_residual"):
        create_model("sew_resnet18", zero_init_residual=1)  # an int is no bool either
    bad_threshold = r"ParametricLIFNode: argument learnable_threshold must be true or false"
    with pytest.raises(ConfigurationError, match=bad_threshold):
        create_model("plif_digits", neuron_kwargs={"learnable_threshold": "False"})
    with pytest.raises(ConfigurationError, match=r"LIFNode: argument decay_input .* got 'no'"):
        NeuronFactory("lif", {"decay_input": "no"})
    with pytest.raises(ConfigurationError, match=r"ATan: argument spiking must be true or false"):
        NeuronFactory("lif", {"surrogate_function": {"name": "atan", "spiking": "False"}})
    model = create_model("plif_digits", batch_norm=False, neuron_kwargs={"decay_input": False})
    assert not [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert not any(n.decay_input for n in _neurons(model))
    soft = NeuronFactory("lif", {"v_reset": None})()  # None where the argument allows it
    assert soft.v_reset is None


def test_bool_check_reads_annotations_and_defaults():
    import inspect

    from spikeflow.models.common import check_bool_arguments

    def target(a: bool = True, b: bool | None = None, c=False, d: int = 0, e="x") -> None: ...

    parameters = inspect.signature(target).parameters
    check_bool_arguments(parameters, {"a": False, "b": None, "c": True, "d": "1", "e": 2}, "t")
    for key, value in (("a", None), ("b", "true"), ("c", 0)):
        with pytest.raises(ConfigurationError, match=rf"t: argument {key} must be true or false"):
            check_bool_arguments(parameters, {key: value}, "t")


# -- every spelling of a bool annotation is checked; saved runs read as they ran (review 6)

_SPELLINGS_SOURCE = """
from __future__ import annotations

import typing
import typing as t
from typing import Optional, Union

from torch import nn

from spikeflow.neurons import LIFNode


def plain(x: bool = False): ...
def optional(x: Optional[bool] = None): ...
def union(x: Union[bool, None] = None): ...
def union_none_first(x: Union[None, bool] = None): ...
def typing_union(x: typing.Union[bool, None] = None): ...
def typing_optional(x: typing.Optional[bool] = None): ...
def t_optional(x: t.Optional[bool] = None): ...
def quoted_inner(x: Optional["bool"] = None): ...
def quoted_twice(x: "None | bool" = None): ...
def pipe(x: bool | None = None): ...
def annotated(x: typing.Annotated[Optional[bool], "flag"] = None): ...
def unresolvable(x: Union[bool, None] = None, y: NotDefinedHere = None): ...


class Net(nn.Module):
    def __init__(self, flag: Union[bool, None] = None, other: t.Optional[bool] = None):
        super().__init__()
        self.flag, self.other = flag, other


def builder(**kwargs) -> Net:
    return Net(**kwargs)


class MyLIF(LIFNode):
    def __init__(self, hard: Union[bool, None] = None, **kwargs):
        super().__init__(**kwargs)
        self.hard = hard
"""


@pytest.fixture(scope="module")
def spellings():
    module = types.ModuleType("spikeflow_test_bool_spellings")
    sys.modules[module.__name__] = module
    exec(compile(_SPELLINGS_SOURCE, "<spellings>", "exec"), module.__dict__)
    yield module
    del sys.modules[module.__name__]


SPELLINGS = ["plain", "optional", "union", "union_none_first", "typing_union",
             "typing_optional", "t_optional", "quoted_inner", "quoted_twice", "pipe",
             "annotated", "unresolvable"]  # fmt: skip


@pytest.mark.parametrize("name", SPELLINGS)
def test_every_spelling_of_a_bool_annotation_refuses_a_string(spellings, name):
    # Union[bool, None], t.Optional[bool], Optional['bool'] and a quoted annotation used
    # to pass 'False' on, which counts as true.
    import inspect

    from spikeflow.models.common import annotated_signature, check_bool_arguments

    fn = getattr(spellings, name)
    optional = name != "plain"
    # the annotations as evaluated (where they can be) and as the strings they are
    for parameters in (annotated_signature(fn).parameters, inspect.signature(fn).parameters):
        allowed = "true or false" + (r" \(or None\)" if optional else "")
        for bad in ("False", 0, "None"):
            with pytest.raises(ConfigurationError, match=rf"argument x must be {allowed}"):
                check_bool_arguments(parameters, {"x": bad}, name)
        assert check_bool_arguments(parameters, {"x": False}, name) == {"x": False}
        if optional:
            assert check_bool_arguments(parameters, {"x": None}, name) == {"x": None}


def test_registered_models_and_neurons_check_every_bool_spelling(spellings):
    from spikeflow.models.registry import _REGISTRY, register_model

    register_model("test_bool_spellings_net")(spellings.builder)
    try:
        for arg in ("flag", "other"):
            with pytest.raises(ConfigurationError, match=rf"argument {arg} must be true or"):
                create_model("test_bool_spellings_net", **{arg: "False"})
        model = create_model("test_bool_spellings_net", flag=False, other=None)
        assert model.flag is False and model.other is None
    finally:
        del _REGISTRY["test_bool_spellings_net"]
    with pytest.raises(ConfigurationError, match=r"MyLIF: argument hard must be true or false"):
        NeuronFactory(spellings.MyLIF, {"hard": "False"})
    assert NeuronFactory(spellings.MyLIF, {"hard": True})().hard is True


def test_a_saved_run_reads_a_string_bool_as_the_run_did():
    # A run saved before bools were checked holds "False" where it meant False; the run
    # used it as True (a non-empty string is truthy): reading it back keeps that, with a
    # warning; new input stays strict.
    from spikeflow.models.common import SavedRunWarning, reading_saved_run

    with reading_saved_run():
        with pytest.warns(SavedRunWarning) as caught:
            factory = NeuronFactory(
                "lif",
                {"detach_reset": "False",
                 "surrogate_function": {"name": "atan", "spiking": "False"}},
            )  # fmt: skip
            model = create_model("plif_digits", batch_norm="False")
    neuron = factory()
    assert neuron.detach_reset is True and neuron.surrogate_function.spiking is True
    assert [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    messages = [str(w.message) for w in caught]
    assert any(
        "LIFNode: in the saved run, argument detach_reset is the string 'False'" in m
        and "ambiguous" in m
        and "using True" in m
        for m in messages
    ), messages
    assert any("ATan" in m and "argument spiking" in m for m in messages), messages
    assert any("'plif_digits'" in m and "argument batch_norm" in m for m in messages), messages
    with pytest.raises(ConfigurationError, match="that run used it as True"):
        NeuronFactory("lif", {"detach_reset": "False"})  # outside: refused, with a hint


def test_a_registered_surrogate_with_a_required_argument_builds_from_a_dict(monkeypatch):
    """The bool check reads the surrogate's class without building it (a constructor
    argument without default made that probe fail); 'True' strings are still refused."""
    from spikeflow import surrogate as sg

    class Needy(sg.Sigmoid):
        def __init__(self, sigma: float, spiking: bool = True) -> None:
            super().__init__(alpha=1.0 / sigma, spiking=spiking)

    monkeypatch.setitem(sg.SURROGATES, "needy", Needy)
    node = NeuronFactory("lif", {"surrogate_function": {"name": "needy", "sigma": 0.25}})()
    assert isinstance(node.surrogate_function, Needy)
    with pytest.raises(ConfigurationError, match="argument spiking must be true or false"):
        NeuronFactory(
            "lif", {"surrogate_function": {"name": "needy", "sigma": 1, "spiking": "no"}}
        )()
    with pytest.raises(ConfigurationError, match=r"got 'yes' \(str\)$"):  # no legacy hint
        NeuronFactory("plif", {"learnable_threshold": "yes"})()


def test_every_model_builds_on_the_meta_device():
    # Neurons compared their threshold with v_reset through a tensor, which has no value
    # on the meta device: no model could be built under torch.device("meta").
    from spikeflow.models import list_models

    for name in list_models():
        kwargs = {"in_features": 140} if name in ("delay_snn", "rsnn", "eprop_rsnn") else {}
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        assert all(p.is_meta for p in model.parameters()), name


def test_vgg_refuses_an_input_too_small_for_its_max_pools():
    # VGG-11 has 5 max pools: a side of 32 leaves 1, a side of 31 leaves 0 (the first
    # forward would fail); spikeflow train passes its dataset's size (8x8 digits).
    small = dict(num_classes=3, in_channels=1, pool_size=1, hidden_features=8)
    model = create_model("spiking_vgg11", input_size=(32, 40), **small)
    assert model(torch.rand(1, 1, 1, 32, 40)).shape == (1, 1, 3)
    for size in (31, (32, 31), 8):
        with pytest.raises(ConfigurationError, match=r"SpikingVGG: input_size .* its 5 2x2 pools"):
            create_model("spiking_vgg11", input_size=size, **small)
    assert "input_size" in model_arguments("spiking_vgg11")
