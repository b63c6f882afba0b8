"""SpikeDHS: against SpikingJelly 2.0's ``model.spike_dhs.SpikeDHS`` with its weights
converted (outputs, auxiliary logits, input and parameter gradients, batch-norm
statistics; the surrogate gradient search's stages), the paper-size tensors, the Dspike
surrogate against SpikingJelly's, and argument and input errors."""

from __future__ import annotations

import io
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.spike_dhs import SpikeDHS, convert_spikingjelly_state_dict
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import DSpike

F64 = dict(rtol=1e-10, atol=1e-12)
T = 6  # SpikingJelly's SpikeDHS repeats its input over 6 steps
#: The channels of a node at level 0: SpikingJelly's ``fea_filter_multiplier`` (48) made 2.
FM = 2


@pytest.fixture(scope="module")
def sj():
    module = pytest.importorskip(
        "spikingjelly.activation_based.model.spike_dhs", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional

    return types.SimpleNamespace(module=module, functional=functional)


def _args(filter_multiplier: int, layers: int = 8) -> types.SimpleNamespace:
    return types.SimpleNamespace(fea_step=3, fea_num_layers=layers, fea_block_multiplier=3,
                                 fea_filter_multiplier=filter_multiplier)  # fmt: skip


def _theirs(sj) -> torch.nn.Module:
    """SpikingJelly's SpikeDHS with ``fea_filter_multiplier = 2`` (its code as it is but
    its two heads, which fix 576 input channels: rebuilt with its own classes for the
    24 of this width), in multi-step mode, its batch norms' statistics and affine
    parameters drawn (the network fires at every level)."""
    model = sj.module.SpikeDHS(3, args=_args(FM))
    width = 3 * FM * 4
    model.classifier = sj.module.SpikingLinear(width, 100, spiking=False)
    model.feature.auxiliary_head = sj.module.AuxiliaryHeadCIFAR(width, 100)
    sj.functional.set_step_mode(model, "m")
    _draw_batch_norms(model)
    return model


def _draw_batch_norms(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)


def _ours(theirs, **kwargs) -> SpikeDHS:
    ours = create_model("spike_dhs", filter_multiplier=FM, **kwargs)
    search = kwargs.get("surrogate_search", True)
    ours.load_state_dict(convert_spikingjelly_state_dict(theirs.state_dict(), search))
    return ours


def _their_units(theirs) -> list[torch.nn.Module]:
    return [theirs.feature.stem0] + [op for cell in theirs.feature.cells for op in cell._ops]


def _assert_grads_equal(ours, theirs) -> None:
    """Every parameter gradient of ours is SpikingJelly's (renamed); those SpikingJelly
    has none of (the search copies outside a stage) are None here too."""
    theirs_grads = {k: p.grad for k, p in theirs.named_parameters() if p.grad is not None}
    expected = convert_spikingjelly_state_dict(theirs_grads)
    for name, p in ours.named_parameters():
        if name not in expected:
            assert p.grad is None, name
            continue
        torch.testing.assert_close(p.grad, expected[name], **F64, msg=name)


def test_equals_spikingjelly_with_its_weights(sj, float64):
    """Training mode (SpikingJelly's returns the auxiliary logits) on 32x32, then eval
    mode: the outputs (the time-mean of ours) bit-equal, input and parameter gradients,
    running statistics after the training step."""
    theirs = _theirs(sj)
    ours = _ours(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    # (batch 2: with one sample, the time-mean of a training-mode BN1d over its T rows is
    # its bias, and no gradient reaches anything else)
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2
    g, g_aux = torch.randn(2, 100), torch.randn(2, 100)

    x1, x2 = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    y1, aux1 = theirs.train()(x1)
    y2, aux2 = ours.train().forward_with_auxiliary(x2.expand(T, *image.shape))
    assert y2.shape == aux2.shape == (T, 2, 100)
    assert torch.equal(y2.mean(0), y1) and torch.equal(aux2.mean(0), aux1)
    ((y1 * g).sum() + (aux1 * g_aux).sum()).backward()
    ((y2.mean(0) * g).sum() + (aux2.mean(0) * g_aux).sum()).backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    assert x2.grad.abs().sum() > 0
    _assert_grads_equal(ours, theirs)
    for name, p in ours.named_parameters():  # the gradient reaches every used weight
        used = ".branches.1." not in name and ".branches.2." not in name
        if used and name.endswith("weight"):
            assert p.grad.abs().max() > 1e-3, name  # (rounding noise: about 1e-15)
    expected = convert_spikingjelly_state_dict(dict(theirs.named_buffers()))
    for name, buffer in ours.named_buffers():
        torch.testing.assert_close(buffer, expected[name], **F64, msg=name)

    theirs.zero_grad()
    ours.zero_grad()
    image, g = image[:1], g[:1]  # (eval mode: one sample is enough)
    x1, x2 = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    sj.functional.reset_net(theirs)
    y1, none = theirs.eval()(x1)
    y2 = ours.eval()(x2.expand(T, *image.shape))
    assert none is None and torch.equal(y2.mean(0), y1)
    (y1 * g).sum().backward()
    (y2.mean(0) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    assert x1.grad.abs().max() > 1e-6
    _assert_grads_equal(ours, theirs)


def test_surrogate_search_equals_spikingjellys(sj, float64):
    """The surrogate gradient search (eval mode, 8x8): the weights frozen but the
    units', the three branches mixed by ``dgs_alpha`` (outputs, input and ``dgs_alpha``
    gradients), the stage's end moving each unit's Dspike alpha in its direction, and a
    second stage's copies at alpha ± 0.2."""
    theirs = _theirs(sj).eval()
    ours = _ours(theirs).eval()
    units = ours.units()
    assert len(units) == len(_their_units(theirs)) == 25
    theirs.dgs_freeze_weights()
    ours.dgs_freeze_weights()
    g = torch.Generator().manual_seed(5)
    for unit in _their_units(theirs):
        unit.dgs_init_stage()
        with torch.no_grad():  # the copies trained apart: dgs_alpha has a gradient
            unit.dgs_alpha.copy_(torch.randn(3, generator=g))
            for name, p in unit.named_parameters():
                if name.endswith(("_s.weight", "_b.weight")):
                    p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
    ours.dgs_init_stage()
    ours.load_state_dict(convert_spikingjelly_state_dict(theirs.state_dict()))
    flags = convert_spikingjelly_state_dict(
        {k: torch.tensor(p.requires_grad) for k, p in theirs.named_parameters()}
    )
    assert {k: bool(v) for k, v in flags.items()} == {
        k: p.requires_grad for k, p in ours.named_parameters()
    }
    image = torch.rand(1, 3, 8, 8, generator=g) * 2
    grad = torch.randn(1, 100, generator=g)

    def compare(copies_apart: bool = False) -> None:
        x1, x2 = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
        sj.functional.reset_net(theirs)
        y1, _ = theirs(x1)
        y2 = ours(x2.expand(T, *image.shape))
        assert torch.equal(y2.mean(0), y1)
        (y1 * grad).sum().backward()
        (y2.mean(0) * grad).sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad, **F64)
        assert x1.grad.abs().max() > 1e-6
        _assert_grads_equal(ours, theirs)
        if copies_apart:  # (a unit all of whose neurons sit outside Dspike's band has none)
            reached = [bool(unit.dgs_alpha.grad.abs().max() > 1e-8) for unit in units]
            assert sum(reached) >= 20, reached
        theirs.zero_grad(set_to_none=True)
        ours.zero_grad(set_to_none=True)

    compare(copies_apart=True)
    directions = [i % 3 for i in range(25)]
    for unit, direction in zip(_their_units(theirs), directions, strict=True):
        unit.dgs_finish_stage(direction)
    ours.dgs_finish_stage(directions)
    alphas = [u.spike_m.surrogate_function.alpha for u in _their_units(theirs)]
    assert [u.alpha for u in units] == alphas
    assert sorted(set(alphas)) == pytest.approx([2.8, 3.0, 3.2])
    compare()  # the main branches alone, at the new alphas

    for unit in _their_units(theirs):
        unit.dgs_init_stage()
    ours.dgs_init_stage()
    for theirs_unit, unit in zip(_their_units(theirs), units, strict=True):
        lower, upper = (b.neuron.surrogate_function.alpha for b in unit.branches[1:])
        assert lower == theirs_unit.spike_s.surrogate_function.alpha == unit.alpha - 0.2
        assert upper == theirs_unit.spike_b.surrogate_function.alpha == unit.alpha + 0.2
    compare()


def test_a_path_that_goes_up_again_equals_spikingjellys_cells(sj, float64):
    """Levels 0, 1, 2, 1, 0 on a 9x9 input (9 → 5 → 3, then up to 5 and 9: the odd
    sides' rule, and ``s0`` resized to ``s1``): the cells' output is that of
    SpikingJelly's ``newFeature`` built on that path (eval mode, its weights)."""
    path = (0, 1, 2, 1, 0)
    cell = [[1, 1], [0, 1], [3, 2], [2, 1], [7, 1], [8, 1]]
    theirs = sj.module.newFeature(3, sj.module.network_layer_to_space(np.array(path)),
                                  np.array(cell), args=_args(FM, len(path)))  # fmt: skip
    sj.functional.set_step_mode(theirs, "m")
    _draw_batch_norms(theirs)
    ours = SpikeDHS(filter_multiplier=FM, levels=path, auxiliary_after=None).eval()
    state = {f"feature.{k}": v for k, v in theirs.state_dict().items() if "auxiliary" not in k}
    missing, unexpected = ours.load_state_dict(convert_spikingjelly_state_dict(state), strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing)
    x = torch.rand(T, 2, 3, 9, 9) * 2
    expected, _ = theirs.eval()(x)
    prev_prev = prev = ours.stem(x)
    for module in ours.cells:
        prev_prev, prev = prev, module(prev_prev, prev)
    assert prev.shape == expected.shape == (T, 2, 3 * FM, 9, 9)
    assert torch.equal(prev, expected) and expected.sum() > 0


def test_the_search_goes_down_to_the_box_where_spikingjelly_divides_by_zero(sj, float64):
    """Stages that each lower alpha stop at 0.2; the next stage's lower copy has alpha 0,
    Dspike's box (SpikingJelly: ZeroDivisionError in its backward)."""
    theirs = sj.module.SearchSpikingConv2d_stem(3, 4)
    sj.functional.set_step_mode(theirs, "m")
    model = SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None)
    unit = model.stem
    for _ in range(15):
        theirs.dgs_init_stage()
        theirs.dgs_finish_stage(0)
        unit.dgs_init_stage()
        unit.dgs_finish_stage(0)
        assert unit.alpha == theirs.spike_m.surrogate_function.alpha
    assert unit.alpha == 0.2
    unit.dgs_init_stage()
    assert unit.branches[1].neuron.surrogate_function.alpha == 0.0
    x = torch.rand(2, 1, 3, 4, 4, requires_grad=True)
    (model(x) * torch.randn(2, 1, 100)).sum().backward()
    lower = unit.branches[1].convs[0].weight.grad
    assert x.grad.isfinite().all() and lower.isfinite().all() and lower.abs().sum() > 0
    theirs.dgs_init_stage()
    y = theirs(x.detach().requires_grad_(True))
    with pytest.raises(ZeroDivisionError):
        y.sum().backward()


def test_a_dgs_step_above_alpha_is_refused_before_any_unit_starts():
    """SpikingJelly's step is 0.2, alpha's floor, so its lower copy never goes below 0;
    a larger ``dgs_step`` would give it a negative alpha, the curve of ``|alpha|`` (not
    a lower temperature), or (was) 0 where the search then cannot move: refused, naming
    the unit, and no unit starts. A step that lands on 0 by rounding is the box."""
    model = SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None, dgs_step=0.5)
    unit = model.stem
    for expected in (2.5, 2.0, 1.5, 1.0, 0.5):
        model.dgs_init_stage()
        assert unit.branches[1].neuron.surrogate_function.alpha == expected
        model.dgs_finish_stage([0] * len(model.units()))
        assert unit.alpha == expected
    model.dgs_init_stage()  # 0.5 - 0.5: the box
    assert unit.branches[1].neuron.surrogate_function.alpha == 0.0
    model.dgs_finish_stage([0] * len(model.units()))
    assert unit.alpha == 0.2
    unit.branches[0].neuron.surrogate_function.alpha = 3.0  # the first unit could start
    with pytest.raises(
        ConfigurationError,
        match=r"unit 1 of \d+: SpikeDHS: dgs_step=0\.5 is above the main surrogate's "
        r"alpha=0\.2: the lower copy's alpha would be -0\.3",
    ):
        model.dgs_init_stage()
    assert not any(u.searching for u in model.units())
    rounded = SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None, dgs_step=0.3)
    for u in rounded.units():
        u.branches[0].neuron.surrogate_function.alpha = 0.3 - 1e-16  # a step that rounded below
    rounded.dgs_init_stage()
    assert rounded.stem.branches[1].neuron.surrogate_function.alpha == 0.0


def test_paper_size_tensors_are_spikingjellys(sj):
    """``spike_dhs`` has SpikingJelly's tensors at the paper's size (43,468,611
    parameters), renamed by the converter; without the search copies 14,892,600."""
    with torch.device("meta"):
        theirs = sj.module.SpikeDHS(3, args=_args(48)).state_dict()
        for search in (True, False):
            ours = create_model("spike_dhs", surrogate_search=search)
            count = sum(p.numel() for p in ours.parameters())
            converted = convert_spikingjelly_state_dict(theirs, search)
            mine = ours.state_dict()
            search_state = [k for k in mine if k.endswith(("surrogate_alpha", "dgs_searching"))]
            assert len(search_state) == 25 * (1 + search)  # (SpikingJelly keeps no alpha)
            mine = {k: v for k, v in mine.items() if k not in search_state}
            assert sorted(converted) == sorted(mine)
            assert all(mine[k].shape == v.shape for k, v in converted.items())
            assert count == (43_468_611 if search else 14_892_600)


def test_the_search_free_model_computes_the_main_branches(float64):
    """``surrogate_search=False``: the search model's names but the copies' (its main
    branches load strictly) and the same function."""
    full = SpikeDHS(filter_multiplier=2).eval()
    lean = SpikeDHS(filter_multiplier=2, surrogate_search=False).eval()
    names = lean.state_dict().keys()
    lean.load_state_dict({k: v for k, v in full.state_dict().items() if k in names})
    x = torch.rand(T, 1, 3, 8, 8) * 2
    assert torch.equal(lean(x), full(x))
    with pytest.raises(ConfigurationError, match="surrogate_search=False"):
        lean.dgs_init_stage()
    assert lean.architecture_parameters() == []
    assert len(full.architecture_parameters()) == 25
    assert len(full.weight_parameters()) + 25 == len(list(full.parameters()))


def test_dspike_equals_spikingjellys(sj, float64):
    """Dspike forward (a step) and pseudo-derivative against SpikingJelly's, its
    primitive's derivative (``spiking=False``) against the pseudo-derivative, and the
    alpha → 0 limit (a box)."""
    x = torch.linspace(-1, 1, 401)
    for alpha in (0.5, 3.0, 5.0):
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = DSpike(alpha)(a), sj.module.DSpike(alpha)(b)
        assert torch.equal(ya, yb)
        ya.sum().backward()
        yb.sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-13, atol=0)
        assert a.grad[x.abs() > 0.5].eq(0).all() and a.grad[x.abs() <= 0.5].gt(0).all()
        c = x.clone().requires_grad_(True)
        DSpike(alpha, spiking=False)(c).sum().backward()
        inside = (x.abs() - 0.5).abs() > 1e-9
        torch.testing.assert_close(c.grad[inside], a.grad[inside], rtol=1e-12, atol=1e-14)
    box = DSpike.derivative(x, alpha=0.0)
    torch.testing.assert_close(box, DSpike.derivative(x, alpha=1e-7), rtol=1e-12, atol=0)
    torch.testing.assert_close(box, (x.abs() <= 0.5).double())
    torch.testing.assert_close(
        DSpike(0.0, spiking=False)(x), (x.clamp(-0.5, 0.5) + 0.5), rtol=0, atol=0
    )
    with pytest.raises(ConfigurationError, match=r"DSpike: parameter alpha must be >= 0"):
        DSpike(-1.0)


@pytest.mark.parametrize("backend", fused_backends())
def test_dspike_lif_fused_kernel_equals_the_reference_loop(backend, float64):
    """SpikeDHS's LIF with Dspike on the fused kernels (alpha a run-time parameter: one
    kernel for every alpha the search visits, 0 included) and on the reference loop."""
    device = kernel_device(backend)
    x = torch.rand(6, 3, 40, device=device).requires_grad_(True)
    g = torch.randn(6, 3, 40, device=device)
    for alpha in (0.0, 0.2, 3.0):
        out = []
        for name in (backend, "torch"):
            neuron = LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, detach_reset=True,
                             surrogate_function=DSpike(alpha), backend=name)  # fmt: skip
            y = neuron(x)
            out.append((y, torch.autograd.grad((y * g).sum(), x)[0]))
        assert torch.equal(out[0][0], out[1][0]) and out[0][0].sum() > 0
        torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-12, atol=1e-14)


def test_neurons_are_spikingjellys_and_can_be_chosen():
    model = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None)
    neuron = model.stem.branches[0].neuron
    assert isinstance(neuron, LIFNode) and neuron.tau == 1.25 and not neuron.decay_input
    assert neuron.v_threshold == 0.5 and neuron.v_reset == 0.0 and neuron.detach_reset
    surrogates = [m.surrogate_function for m in model.modules() if isinstance(m, LIFNode)]
    assert all(isinstance(s, DSpike) and s.alpha == 3.0 for s in surrogates)
    assert len({id(s) for s in surrogates}) == len(surrogates)  # searched one by one
    leaky = {"surrogate_function": "piecewise_leaky_relu"}  # (no alpha)
    other = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None, neuron="if",
                     neuron_kwargs=leaky)  # fmt: skip
    assert other(torch.rand(2, 1, 3, 8, 8)).shape == (2, 1, 100)
    with pytest.raises(ConfigurationError, match="surrogate_function with a temperature alpha"):
        other.dgs_init_stage()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": (0, 2)}, r"levels \(0, 2\) must start at 0 or 1 and change by at most one"),
        ({"levels": (2,)}, "must start at 0 or 1"),
        ({"levels": (0, 1, 2, 0)}, "change by at most one level"),
        ({"levels": (0, -1)}, "levels must be a non-empty sequence"),
        ({"levels": "001"}, "levels must be a non-empty sequence"),
        ({"cell_inputs": ((0, 1), (0, 3))}, r"cell_inputs\[1\] must name states before"),
        ({"cell_inputs": ()}, "cell_inputs must give each node's input states"),
        ({"block_multiplier": 4}, r"last block_multiplier \(4\) nodes, but cell_inputs gives it 3"),
        ({"auxiliary_after": 8}, "auxiliary_after must be a cell's index"),
        ({"dgs_step": 0.0}, "dgs_step must be a positive number"),
        ({"filter_multiplier": 0}, "filter_multiplier must be a positive integer"),
        ({"num_classes": 2.5}, "num_classes must be a positive integer"),
        ({"surrogate_search": 1}, "surrogate_search must be True or False"),
        ({"zero_init_residual": True}, "no residual blocks"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        SpikeDHS(**kwargs)


def test_bad_calls_are_named():
    model = SpikeDHS(filter_multiplier=1, levels=(0, 0), auxiliary_after=1)
    with pytest.raises(ConfigurationError, match="argument surrogate_search must be true"):
        create_model("spike_dhs", surrogate_search="False")
    with pytest.raises(ConfigurationError, match="without a search stage"):
        model.stem.dgs_finish_stage(0)
    model.dgs_init_stage()
    with pytest.raises(ConfigurationError, match=r"direction must be 0 .* got 3"):
        model.stem.dgs_finish_stage(3)
    with pytest.raises(ConfigurationError, match=r"one direction per unit \(7\), got 2"):
        model.dgs_finish_stage([0, 1])
    with pytest.raises(ShapeError, match="missing the time dimension"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ShapeError, match="auxiliary head reads a map of 8x8 to 10x10"):
        model.forward_with_auxiliary(torch.rand(1, 1, 3, 16, 16))
    with pytest.raises(ConfigurationError, match="built without an auxiliary head"):
        SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None).forward_with_auxiliary(
            torch.rand(1, 1, 3, 8, 8)
        )
    with pytest.raises(ConfigurationError, match=r"'feature\.stem0\.conv_x\.weight' is not a name"):
        convert_spikingjelly_state_dict({"feature.stem0.conv_x.weight": torch.zeros(1)})
    # (the stem's one input has no index, a cell unit's two do: these mapped onto
    # stem.branches.0.convs.0, cells.0.nodes.0.branches.0.norms.-1 and ...convs.2)
    unit = "feature.cells.0._ops.0"
    bad = ["feature.stem0.conv1_m.weight", f"{unit}.bn0_m.bias", f"{unit}.conv3_m.weight",
           f"{unit}.conv_m.weight"]  # fmt: skip
    for name in bad:
        with pytest.raises(ConfigurationError, match=re.escape(f"{name!r} is not a name")):
            convert_spikingjelly_state_dict({name: torch.zeros(1)})


def test_the_documented_search_stage_runs():
    """The sketch in docs/models_convnets.md: a stage moves each unit's alpha by at
    most one step and leaves every parameter trainable and the main branches alone."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "models_convnets.md").read_text()
    section = text[text.index("## SpikeDHS") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/models_convnets.md", "exec"), namespace)
    model = namespace["model"]
    assert len(namespace["alphas"]) == 25 and set(namespace["alphas"]) <= {2.8, 3.0, 3.2}
    assert set(namespace["alphas"]) != {3.0}  # (the copies trained apart: units choose)
    assert all(unit.dgs_alpha.grad.abs().max() > 1e-4 for unit in model.units()[:5])
    assert all(p.requires_grad for p in model.parameters())
    assert not any(unit.searching for unit in model.units())


def _search_state(model: SpikeDHS) -> list:
    alphas = [[b.neuron.surrogate_function.alpha for b in u.branches] for u in model.units()]
    return [alphas, [u.searching for u in model.units()]]


def test_the_search_state_is_saved_and_restored():
    """The units' alphas (the search's result) and a running stage travel with the state
    dict (and a checkpoint file): a fresh model loading it has the same gradients, and
    in a stage the same mixed outputs; the main alphas also load into a model without
    the search; a state dict without them (SpikingJelly's, converted) keeps the model's."""
    model = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None)
    model.dgs_init_stage()
    model.dgs_finish_stage([0, 2, 0, 2, 1, 0, 2])
    model.dgs_init_stage()  # a checkpoint in the middle of the next stage
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for unit in model.units():
            unit.dgs_alpha.copy_(torch.randn(3, generator=g))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None)
    fresh.load_state_dict(torch.load(buffer))
    assert _search_state(fresh) == _search_state(model)
    assert model.stem.alpha == pytest.approx(2.8) and model.cells[0].nodes[0].alpha == 3.2
    x = torch.rand(4, 2, 3, 6, 6, generator=g) * 2
    grads = []
    for net in (model, fresh):
        xi = x.clone().requires_grad_(True)
        y = net.eval()(xi)
        grads.append((y, torch.autograd.grad((y * y).sum(), xi)[0]))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])

    lean = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None,
                    surrogate_search=False)  # fmt: skip
    model.dgs_finish_stage([1] * 7)
    names = lean.state_dict().keys()
    lean.load_state_dict({k: v for k, v in model.state_dict().items() if k in names})
    assert [u.alpha for u in lean.units()] == [u.alpha for u in model.units()]

    state = {k: v for k, v in model.state_dict().items() if "surrogate_alpha" not in k}
    other = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None)
    other.load_state_dict(state)
    assert [u.alpha for u in other.units()] == [3.0] * 7
    state["stem.surrogate_alpha"] = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"stem\.surrogate_alpha: the branches' surrogate"):
        other.load_state_dict(state)
    with torch.device("meta"):  # (a meta state dict has no alphas to give: kept)
        state = SpikeDHS(filter_multiplier=1, levels=(0, 1), auxiliary_after=None).state_dict()
    model.load_state_dict(state, assign=True)
    assert model.stem.alpha == pytest.approx(2.8)


def test_dspike_at_a_vanishing_alpha_is_the_box():
    """An alpha so small that ``tanh(alpha / 2)`` underflows (float64's subnormals) is
    the box, as alpha = 0 is: no ZeroDivisionError, no inf or NaN in the primitive
    (float32 too, whose ``1 / tanh`` overflowed from alpha 3e-38 down)."""
    for dtype in (torch.float64, torch.float32):
        x = torch.linspace(-1, 1, 41, dtype=dtype)
        box = (x.abs() <= 0.5).to(dtype)
        for alpha in (5e-324, 1e-310, 1e-39, 1e-9):
            torch.testing.assert_close(DSpike.derivative(x, alpha=alpha), box, rtol=0, atol=0)
            c = x.clone().requires_grad_(True)
            y = DSpike(alpha, spiking=False)(c)
            torch.testing.assert_close(y, x.clamp(-0.5, 0.5) + 0.5, rtol=0, atol=1e-7)
            y.sum().backward()
            inside = (x.abs() - 0.5).abs() > 1e-6
            torch.testing.assert_close(c.grad[inside], box[inside], rtol=0, atol=1e-7)


def test_a_stage_without_evidence_keeps_alpha():
    """``dgs_finish_stage()`` takes each unit's largest weight; where the main branch's
    ties for it (``dgs_alpha`` never moved: no gradient reached it) alpha stays (it was
    lowered: ``argmax`` takes the first of equal values)."""
    model = SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None)
    weights = [(0.0, 0.0, 0.0), (0.3, 0.1, 0.2), (0.1, 0.1, 0.3), (0.2, 0.2, 0.1)]
    for values, expected in zip(weights, (3.0, 2.8, 3.0, 3.0), strict=True):
        model.dgs_init_stage()
        with torch.no_grad():
            for unit in model.units():
                unit.dgs_alpha.copy_(torch.tensor(values) + unit.dgs_alpha)
        model.dgs_finish_stage()
        assert [u.alpha for u in model.units()] == pytest.approx([expected] * 4), values


def test_a_refused_finish_leaves_the_stage_running():
    """A bad direction for one unit refuses the whole call before any unit changes (the
    units before it left the stage, their alphas moved, and the corrected call failed)."""
    model = SpikeDHS(filter_multiplier=1, levels=(0,), auxiliary_after=None)
    model.dgs_init_stage()
    with pytest.raises(ConfigurationError, match=r"unit 3 of 4: .*direction must be 0 .* got 5"):
        model.dgs_finish_stage([0, 2, 0, 5])
    assert all(u.searching for u in model.units()) and {u.alpha for u in model.units()} == {3.0}
    model.dgs_finish_stage([0, 2, 0, 1])
    assert [u.alpha for u in model.units()] == pytest.approx([2.8, 3.2, 2.8, 3.0])
